"""
=======================================================
Speed against scikit-learn and statsmodels
=======================================================

Fit times measured by the benchmark scripts (``benchmarks/bench_*.py``),
plotted from the results files they write to ``benchmarks/results/``. The
benchmarks are not run here (they take minutes to an hour); the benchmarks
page of the documentation gives the machine, the tables, how to reproduce
them and the format of the files: one JSON object per benchmark with
``benchmark``, ``date``, ``reference``, ``machine`` and ``rows``, each row
a fit with ``design``, ``n``, ``n_features``, ``estimator``, ``status``,
``seconds``, ``ratio`` (``seconds`` over the reference's on the same data)
and ``peak_memory_fraction``.

Benchmarks that time growing ``n`` on a few designs are drawn as lines
against ``n``; the shapes benchmark, whose problems differ in shape, as
points per problem. Every line or series has its own colour and marker, and
the legend sits below the panels, where it covers no data.
"""

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

# The results live next to the benchmark scripts. sphinx-gallery runs an
# example from its own directory without setting __file__.
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
results_dir = here.parent / "benchmarks" / "results"
result_files = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
benchmarks = [json.loads(path.read_text()) for path in result_files]

# tab20 comes in pairs of a dark and a light shade of one hue: a benchmark
# with two designs draws an estimator's lines in the two shades of its hue,
# with its own marker, solid on the first design and dashed on the second,
# so that every line differs in colour and the pairs are easy to read.
TAB20 = plt.get_cmap("tab20")
DARK_THEN_LIGHT = [*range(0, 20, 2), *range(1, 20, 2)]
MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p"]


def style(estimator_index, design_index=0, n_designs=1):
    """Colour, marker and line style of one series."""
    if n_designs == 1:  # the dark shades, then the light ones
        colour = TAB20(DARK_THEN_LIGHT[estimator_index % 20])
    elif n_designs == 2 and estimator_index < 10:
        colour = TAB20(2 * estimator_index + design_index)
    else:  # more series than tab20 pairs: distinct colours while they last
        colour = TAB20((estimator_index * n_designs + design_index) % 20)
    return {
        "color": colour,
        "marker": MARKERS[estimator_index % len(MARKERS)],
        "markerfacecolor": colour if design_index == 0 else "white",
        "linestyle": ["-", "--", ":", "-."][design_index % 4],
    }


def legend_below(fig, axis, n_series, tick_space=0.7):
    """One legend for both panels, under them, so that it covers no data.

    ``tick_space`` is the height in inches the x axis needs for its tick
    labels and title; the legend takes a sixth of an inch per row below it.
    """
    handles, labels = axis.get_legend_handles_labels()
    n_columns = 3 if n_series > 6 else 2
    n_legend_rows = -(-n_series // n_columns)
    height = fig.get_figheight()
    bottom = (tick_space + 0.17 * n_legend_rows + 0.1) / height
    fig.subplots_adjust(bottom=bottom, top=1 - 0.6 / height, wspace=0.3)
    fig.legend(
        handles, labels, loc="lower center", ncol=n_columns, fontsize=7, frameon=False
    )


def problem_label(row):
    """Design, rows and columns on short lines, narrow enough for a tick."""
    size = f"{row['n']:.0e}\nx {row['n_features']}".replace("e+0", "e")
    return row["design"].replace(" ", "\n") + "\n" + size


def plot_against_n(result, rows):
    """Fit time and ratio against ``n``, a line per estimator and design."""
    fig, (ax_time, ax_ratio) = plt.subplots(1, 2, figsize=(10, 5.5))
    estimators = list(dict.fromkeys(rows["estimator"]))
    designs = list(dict.fromkeys(zip(rows["design"], rows["n_features"], strict=True)))
    series = rows.groupby(["estimator", "design", "n_features"], sort=False)
    for (estimator, design, p), group in series:
        group = group.sort_values("n")
        label = f"{estimator} / {design}" if len(designs) > 1 else estimator
        kwargs = style(
            estimators.index(estimator), designs.index((design, p)), len(designs)
        )
        ax_time.plot(group["n"], group["seconds"], label=label, **kwargs)
        ax_ratio.plot(group["n"], group["ratio"], label=label, **kwargs)
    ax_time.set_ylabel("fit time [s]")
    ax_ratio.set_ylabel(f"time / time of {result['reference']}")
    ax_ratio.axhline(1.0, color="0.6", lw=1)
    for ax in (ax_time, ax_ratio):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("n_samples")
    legend_below(fig, ax_time, series.ngroups)
    return fig


def plot_per_problem(result, rows):
    """Ratio and peak memory per problem (shape), a series per estimator."""
    problems = rows.drop_duplicates(["design", "n", "n_features"])
    positions = {
        (r.design, r.n, r.n_features): i for i, r in enumerate(problems.itertuples())
    }
    estimators = list(dict.fromkeys(rows["estimator"]))
    fig, (ax_ratio, ax_memory) = plt.subplots(1, 2, figsize=(12, 6.5))
    # Series side by side within a problem, so that equal values stay visible.
    offsets = np.linspace(-0.3, 0.3, len(estimators))
    for index, estimator in enumerate(estimators):
        group = rows[rows["estimator"] == estimator]
        x = [
            positions[key]
            for key in zip(group.design, group.n, group.n_features, strict=True)
        ]
        x = np.asarray(x) + offsets[index]
        kwargs = {**style(index), "linestyle": "none", "label": estimator}
        ax_ratio.plot(x, group["ratio"], **kwargs)
        ax_memory.plot(x, group["peak_memory_fraction"], **kwargs)
    ax_ratio.set_ylabel(f"time / time of {result['reference']}")
    ax_ratio.axhline(1.0, color="0.6", lw=1)
    ax_memory.set_ylabel("peak extra memory / size of X")
    labels = [problem_label(r) for _, r in problems.iterrows()]
    for ax in (ax_ratio, ax_memory):
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        ax.grid(axis="x", color="0.9")
    legend_below(fig, ax_ratio, len(estimators), tick_space=1.1)
    return fig


if not benchmarks:
    print("No benchmark results in benchmarks/results/ yet.")
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, "No benchmark results committed yet.", ha="center")
    ax.set_axis_off()

# %%
# One figure per benchmark. Fits that were skipped or stopped (slow
# references on large data) are listed, not drawn.
for result in benchmarks:
    rows = pd.DataFrame(result["rows"])
    print(f"\n{result['benchmark']} ({result['date']}): {result['description']}")
    print(f"  machine: {result['machine']}")
    missing = rows[rows["status"] != "ok"]
    for _, row in missing.iterrows():
        problem = " ".join(problem_label(row).split())
        print(
            f"  not drawn: {row['estimator']} on {problem}: "
            f"{row['status']} ({row.get('note', '')})"
        )
    rows = rows[rows["status"] == "ok"]
    single_n = rows.groupby(["design", "n_features"])["n"].nunique().min() == 1
    fig = (plot_per_problem if single_n else plot_against_n)(result, rows)
    fig.suptitle(f"benchmark: {result['benchmark']} ({result['date'][:10]})")

plt.show()
