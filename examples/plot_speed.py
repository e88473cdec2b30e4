"""
=======================================================
Speed against scikit-learn and statsmodels
=======================================================

Fit times measured by the benchmark scripts (``benchmarks/bench_*.py``),
plotted from the results files they write to ``benchmarks/results/``. The
benchmarks are not run here (they take minutes); see the benchmarks page of
the documentation for the machine they were measured on and how to
reproduce them.

Each results file is JSON of the form::

    {"benchmark": "huber",
     "rows": [{"n": 10000, "estimator": "skrobust", "seconds": 0.01, "ratio": 1.0},
              ...]}

where ``ratio`` is the time divided by the time of the reference estimator
on the same problem (the optional ``"reference"`` field names it; skrobust's
estimator by default).
"""

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

# The results live next to the benchmark scripts. sphinx-gallery runs an
# example from its own directory without setting __file__.
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
results_dir = here.parent / "benchmarks" / "results"
result_files = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
benchmarks = [json.loads(path.read_text()) for path in result_files]

if not benchmarks:
    print("No benchmark results in benchmarks/results/ yet.")
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(
        0.5,
        0.5,
        "No benchmark results committed yet:\n"
        "run python benchmarks/bench_*.py to produce them.",
        ha="center",
        va="center",
    )
    ax.set_axis_off()

# %%
# One panel per benchmark: fit time against the number of samples, on
# logarithmic axes, one line per estimator.
for result in benchmarks:
    rows = pd.DataFrame(result["rows"])
    print(f"\n{result['benchmark']}: {result.get('description', '')}")
    for key in ("machine", "versions"):
        if key in result:
            print(f"  {key}: {result[key]}")
    print(rows.to_string(index=False))

    fig, (ax_time, ax_ratio) = plt.subplots(1, 2, figsize=(10, 4))
    # One line per estimator, and per design where a benchmark has several.
    keys = ["estimator"] + (["design"] if "design" in rows else [])
    for key, group in rows.groupby(keys, sort=False):
        label = " / ".join(key) if isinstance(key, tuple) else key
        group = group.sort_values("n")
        ax_time.plot(group["n"], group["seconds"], "o-", label=label)
        ax_ratio.plot(group["n"], group["ratio"], "o-", label=label)
    ax_time.set_ylabel("fit time [s]")
    reference = result.get("reference", "skrobust")
    ax_ratio.set_ylabel(f"time / time of {reference}")
    ax_ratio.axhline(1.0, color="0.7", lw=1)
    for ax in (ax_time, ax_ratio):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n_samples")
    ax_time.legend(fontsize=7)
    fig.suptitle(f"benchmark: {result['benchmark']}")
    fig.tight_layout()

plt.show()
