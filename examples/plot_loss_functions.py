"""
=====================================
The losses and their gradients
=====================================

Each estimator minimises a sum of a function :math:`\\rho` of the residuals.
The left panel shows :math:`\\rho`, the right panel its derivative
:math:`\\psi = \\rho'`: the force with which a residual pulls on the fit.
Least squares pulls in proportion to the residual, without bound; Huber and
log-cosh pull like least squares near zero and with a constant force beyond a
threshold; least absolute deviation and the pinball (quantile) loss pull with
a constant force everywhere, the pinball loss harder on one side than on the
other.

Huber's and the log-cosh functions are the residual functions skrobust uses,
from :mod:`skrobust.losses`, at their default thresholds. The dashed curve is
the pinball loss smoothed by convolution with a Gaussian kernel of bandwidth
``h`` (:class:`skrobust.losses.SmoothedPinballRho`), which quantile regression
minimises on its way to the exact solution.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skrobust.losses import HuberRho, LogCoshRho, SmoothedPinballRho, SquaredRho

z = np.linspace(-4.0, 4.0, 801)
tau = 0.9  # a quantile for the pinball loss
smoothed_pinball = SmoothedPinballRho(quantile=tau, bandwidth=0.5)


def pinball(u, tau):
    """The quantile (pinball) loss ``u (tau - 1[u < 0])``."""
    return u * (tau - (u < 0))


losses = {
    "least squares  $z^2/2$": (SquaredRho().value(z), SquaredRho().derivative(z)),
    r"Huber  $\delta=1.35$": (HuberRho(1.35).value(z), HuberRho(1.35).derivative(z)),
    r"log-cosh  $\delta=1$": (LogCoshRho(1.0).value(z), LogCoshRho(1.0).derivative(z)),
    "absolute  $|z|$": (np.abs(z), np.sign(z)),
    rf"pinball  $\tau={tau}$": (pinball(z, tau), np.where(z < 0, tau - 1.0, tau)),
}

fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(10, 4.2))
for label, (value, gradient) in losses.items():
    (line,) = ax_loss.plot(z, value, lw=2, label=label)
    ax_grad.plot(z, gradient, lw=2, color=line.get_color())
# Same colour as the pinball loss, dashed.
ax_loss.plot(
    z,
    smoothed_pinball.value(z),
    "--",
    lw=2,
    color=line.get_color(),
    label=r"smoothed pinball  $h=0.5$",
)
ax_grad.plot(z, smoothed_pinball.derivative(z), "--", lw=2, color=line.get_color())
ax_loss.set_ylim(-0.2, 5.0)
ax_loss.set_title(r"loss $\rho(z)$")
ax_grad.set_ylim(-2.5, 2.5)
ax_grad.set_title(r"gradient $\psi(z) = \rho'(z)$")
for ax in (ax_loss, ax_grad):
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel(r"standardised residual $z = r / \sigma$")
ax_loss.legend(loc="upper center", fontsize=9)
fig.tight_layout()
plt.show()

# %%
# The curvature
# -------------
# Second-order solvers use :math:`\rho''`. Huber's curvature is 1 inside the
# threshold and 0 outside (a piecewise quadratic objective, which Newton's
# method solves exactly once it knows which residuals are inside); the
# log-cosh curvature :math:`\operatorname{sech}^2(z/\delta)` decays smoothly
# and never reaches zero; the absolute and pinball losses have none at all
# away from zero, which is why quantile regression needs either linear
# programming or a smoothed loss: the smoothed pinball loss has the curvature
# :math:`\varphi(z/h)/h`, a bump of width :math:`h` around zero.
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(z, SquaredRho().second_derivative(z), lw=2, label="least squares")
ax.plot(z, HuberRho(1.35).second_derivative(z), lw=2, label=r"Huber $\delta=1.35$")
ax.plot(z, LogCoshRho(1.0).second_derivative(z), lw=2, label=r"log-cosh $\delta=1$")
ax.plot(
    z,
    smoothed_pinball.second_derivative(z),
    "--",
    lw=2,
    label=r"smoothed pinball $h=0.5$",
)
ax.set_xlabel(r"$z$")
ax.set_title(r"curvature $\rho''(z)$")
ax.set_ylim(-0.05, 1.25)
ax.legend(fontsize=9)
fig.tight_layout()
plt.show()
