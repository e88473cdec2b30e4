"""Progress reports of long fits: scikit-learn's ``verbose`` convention.

``verbose=0`` prints nothing, ``1`` a line per stage (each output, each
subsample level of a solve, each loop of replications or levels, with an
estimate of the time left), ``2`` also a line per solver iteration. A fit
opens a report with :func:`reporting`; the solvers and loops write to the
report that is open, so that no signature below the estimator carries a
``verbose`` argument.
"""

import contextlib
import sys
import time

_current = None


class Report:
    """Where the lines of one fit go, and when it started."""

    def __init__(self, verbose, name, stream=None):
        self.verbose = int(verbose)
        self.name = name
        self.stream = sys.stdout if stream is None else stream
        self.start = time.perf_counter()

    def line(self, level, message):
        """Print ``message`` if ``verbose >= level``, with the elapsed time."""
        if self.verbose >= level:
            elapsed = time.perf_counter() - self.start
            print(f"[{self.name}] {elapsed:8.3f}s  {message}", file=self.stream)


@contextlib.contextmanager
def reporting(verbose, name):
    """Open a report for the duration of a fit (nested fits keep the outer one)."""
    global _current
    if _current is not None:
        yield _current
        return
    _current = Report(verbose, name)
    try:
        yield _current
    finally:
        _current = None


def say(level, message, *args):
    """A line of the open report, if any and if ``verbose >= level``.

    ``message`` is formatted with ``args`` (``str.format``), or called if it
    is a function, only when the line is printed: silent fits pay nothing.
    """
    if _current is not None and _current.verbose >= level:
        text = message() if callable(message) else message.format(*args)
        _current.line(level, text)


def loop(iterable, total, what):
    """Iterate, reporting ``i/total`` and an estimate of the time left at verbose 1.

    A loop of one item (a single output, say) reports nothing.
    """
    start = time.perf_counter()
    for i, item in enumerate(iterable, 1):
        yield item
        if _current is not None and _current.verbose >= 1 and total > 1:
            spent = time.perf_counter() - start
            left = spent / i * (total - i)
            say(1, f"{what} {i}/{total} done, about {left:.1f}s left")
