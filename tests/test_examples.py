"""Every gallery example runs, quickly, and draws at least one figure.

The docs build runs the examples too (and renders their figures); this test
catches a broken example without building the docs. Each example runs in a
fresh namespace with matplotlib's non-interactive "Agg" backend, as the
gallery does.
"""

import runpy
import time
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("plot_*.py"))

# "Runs in seconds": generous enough for a loaded CI machine, tight enough to
# catch an example that accidentally runs a benchmark-sized problem.
MAX_SECONDS = 30.0


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_and_draws_a_figure(path, monkeypatch):
    plt.close("all")
    # plt.show() warns on a non-interactive backend, and warnings are errors.
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    start = time.perf_counter()
    try:
        runpy.run_path(str(path), run_name="__main__")
        elapsed = time.perf_counter() - start
        figures = [plt.figure(number) for number in plt.get_fignums()]
        assert figures, f"{path.name} drew no figure"
        # A figure with something on it, not just an empty canvas.
        assert any(figure.axes for figure in figures)
        assert elapsed < MAX_SECONDS, f"{path.name} took {elapsed:.1f} s"
    finally:
        plt.close("all")
