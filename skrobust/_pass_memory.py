"""What a :class:`~skrobust._objective.LinearObjective`'s passes leave behind.

A pass over ``X`` computes more than its caller asks for: the linear
predictors ``eta = X w`` of every row, and, with the Hessian, the value and
gradient. Some callers come back for them at the same point (the MAD of a
fit's residuals, the first gradient of a solve started on a Hessian formed
at its start), or know them already (predictors combined from earlier
fits'). Each memory is off until a caller turns it on, so that an
objective nobody asks to remember costs nothing:

- ``remember_prediction``: passes keep their predictors (in one array per
  objective, written block by block as the pass forms them), and
  :meth:`~skrobust._objective.LinearObjective.raw_prediction` at the same
  point returns them without a product with ``X``;
- ``known_prediction``: ``(coef, eta)`` set by the caller, which a pass at
  ``coef`` reads instead of forming ``X @ w``;
- ``reuse_hessian_pass``: ``loss_gradient`` at the point of the latest
  ``loss_gradient_hessian`` (with the same loss) returns that pass's value
  and gradient instead of another pass.
"""

import numpy as np


class PassMemory:
    """Mixin of :class:`~skrobust._objective.LinearObjective`: its passes' memories.

    Expects ``predictors``, ``X``, ``loss`` and ``_raw_block``.
    """

    def _init_pass_memory(self):
        self.remember_prediction = False
        self._remembered = None  # (coef, eta) of the latest remembering pass
        self._predictions = None  # (what remembering passes write to)
        self.known_prediction = None
        self.reuse_hessian_pass = False
        self._hessian_pass = None  # (coef, loss, value, grad)

    def _remembering(self):
        """The rows' predictors array a pass with ``remember_prediction`` fills.

        Column-major (n_samples, k), one per objective: its blocks are the
        pass's own predictors (:meth:`_raw_block` writes them there), so
        remembering costs neither a copy nor new memory per pass (either
        cost 0.3-0.5 ms of a 3.6 ms pass at 1e5 x 20). Forgotten until
        the pass ends (see :meth:`_remembered_at`).
        """
        self._remembered = None
        if self._predictions is None:
            self._predictions = np.empty((len(self.predictors), self.X.shape[0])).T
        return self._predictions

    def _remember(self, coef, predictions):
        """Remember ``predictions``, the rows' predictors at ``coef`` (not copied)."""
        self._remembered = (coef.copy(), predictions)

    def _remembered_at(self, coef):
        """A copy of the remembered predictors if they are at ``coef``, or None."""
        if self._remembered is not None and np.array_equal(self._remembered[0], coef):
            return self._remembered[1].copy(order="K")
        return None

    def _known_at(self, coef):
        """``known_prediction``'s predictors if they are at ``coef``, or None."""
        known = self.known_prediction
        if known is None or not np.array_equal(known[0], coef):
            return None
        return known[1]

    def _block_prediction(self, parts, raw_coefs, rows, remembered, known):
        """The predictors of one block: ``known``'s rows, or formed from ``parts``.

        Written into ``remembered``'s rows where the pass remembers.
        """
        out = None if remembered is None else remembered[rows]
        if known is None:
            return self._raw_block(parts, raw_coefs, out)
        if out is None:
            return known[rows]
        out[...] = known[rows]
        return out

    def _recalled_value_gradient(self, coef):
        """``(value, grad)`` of the latest Hessian pass if at ``coef``, or None."""
        kept = self._hessian_pass
        if kept is None or kept[1] is not self.loss:
            return None
        if not np.array_equal(kept[0], coef):
            return None
        return kept[2], kept[3].copy()

    def _keep_hessian_pass(self, coef, value, grad):
        """Keep a Hessian pass's value and gradient where ``reuse_hessian_pass``."""
        if self.reuse_hessian_pass:
            self._hessian_pass = (coef.copy(), self.loss, value, grad.copy())
