"""Timing, peak memory and the results file shared by every benchmark script.

Every ``benchmarks/bench_<name>.py`` measures fits with :func:`measure_fit`
(best wall time of a few repeats after a warm-up call, and the peak extra
memory, in a forked child process that is killed after a time limit) and
writes its rows with :func:`write_results` to
``benchmarks/results/<name>.json`` in the format documented in
``docs/benchmarks.rst`` (section "Results file format") and checked by
:func:`validate_results`.

``python benchmarks/_common.py FILE...`` validates results files (CI runs
it on the files the quick benchmarks write and on the committed ones);
``--rst ratio`` (or ``peak_memory_fraction``) also prints each as the
reStructuredText table of ``docs/benchmarks.rst``: a row per problem, a
column per estimator.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import time
import tracemalloc
import warnings
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REFERENCE = "sklearn LinearRegression"
STATUSES = ("ok", "timeout", "skipped", "error")

# Fields every row has (``None`` where a value was not measured) and their
# types; rows may carry further fields, which the plot shows when present.
ROW_FIELDS = {
    "design": str,
    "n": int,
    "n_features": int,
    "estimator": str,
    "status": str,
    "seconds": (float, type(None)),
    "ratio": (float, type(None)),
    "peak_memory_fraction": (float, type(None)),
}
TOP_FIELDS = {
    "benchmark": str,
    "description": str,
    "date": str,
    "quick": bool,
    "reference": str,
    "machine": dict,
    "rows": list,
}


def best_time(fit, repeats):
    """Smallest wall time of the timed calls of ``fit``, and the last result.

    A first, untimed call warms the process up, and quick fits are timed
    more often: the first fits in a freshly forked process pay one-off costs
    that a user fitting repeatedly (a ``GridSearchCV`` loop) does not, such
    as lazy imports and the page faults of memory that glibc's allocator
    has not yet learnt to keep. (A Huber fit at 1e4 x 20 took 45, 22, 19,
    18, 12 and then 8 ms in its first calls, scikit-learn's 23 and then
    9 ms.) After the warm-up there are ``repeats`` timed calls, or as many
    as fit in ``_QUICK_FIT_BUDGET`` seconds at the warm-up's pace, up to
    ``_QUICK_FIT_CALLS``. When the warm-up takes longer than a second it is
    the only call, timed: the noise is small relative to the time, and slow
    references would otherwise dominate a run.
    """
    start = time.perf_counter()
    result = fit()
    first = time.perf_counter() - start
    if first > 1.0:
        return first, result
    calls = max(repeats, min(_QUICK_FIT_CALLS, int(_QUICK_FIT_BUDGET / first)))
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        result = fit()
        best = min(best, time.perf_counter() - start)
    return best, result


# Quick fits are timed up to _QUICK_FIT_CALLS times after their warm-up, as
# many as take _QUICK_FIT_BUDGET seconds at the warm-up's pace (see
# best_time).
_QUICK_FIT_BUDGET = 0.25
_QUICK_FIT_CALLS = 10


def peak_extra_memory(fit):
    """Largest amount of memory allocated at once during ``fit()``, in bytes.

    ``tracemalloc`` sees NumPy's and SciPy's array allocations (they report
    to it) but not BLAS or HiGHS workspaces.
    """
    tracemalloc.start()
    try:
        fit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def _measure_in_child(fit, repeats, memory, summary, connection):
    try:
        # A reference that stops at its iteration limit is still timed; the
        # warnings it raised are reported in the row's note.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds, result = best_time(fit, repeats)
            # A traced run costs another fit: only for fits that are quick.
            peak = peak_extra_memory(fit) if memory and seconds < 20.0 else None
        n_iter = getattr(result, "n_iter_", None)
        if n_iter is not None:
            n_iter = int(max(n_iter)) if hasattr(n_iter, "__len__") else int(n_iter)
        connection.send(
            {
                "status": "ok",
                "seconds": seconds,
                "peak": peak,
                "n_iter": n_iter,
                "summary": None if summary is None else summary(result),
                "note": _warnings_note(caught),
            }
        )
    except Exception as error:  # reported as a row, not a crash of the run
        connection.send({"status": "error", "note": f"{type(error).__name__}: {error}"})
    finally:
        connection.close()


def _warnings_note(caught):
    names = sorted({warning.category.__name__ for warning in caught})
    return "warned: " + ", ".join(names) if names else None


def measure_fit(fit, *, repeats=3, memory=True, timeout=None, summary=None):
    """Time ``fit()`` in a forked child process, killed after ``timeout`` s.

    Parameters
    ----------
    fit : callable
        Fits one estimator on data the parent already holds (the fork shares
        it, so nothing is copied or pickled) and returns the estimator.
        Warnings it raises are recorded, not shown: their names end up in
        the outcome's ``note``.
    repeats : int
        Number of timed calls; the smallest time is kept (see
        :func:`best_time`).
    memory : bool
        Also trace one further call for the peak extra memory.
    timeout : float or None
        Wall-time limit of the whole measurement.
    summary : callable or None
        Applied to the fitted estimator in the child; its (picklable) value
        is returned, for figures such as the objective reached.

    Returns
    -------
    dict
        ``status`` (``"ok"``, ``"timeout"`` or ``"error"``), ``seconds``,
        ``peak`` (bytes or ``None``), ``n_iter``, ``summary`` and, unless
        ok, ``note``.
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_measure_in_child, args=(fit, repeats, memory, summary, sender)
    )
    child.start()
    sender.close()
    if receiver.poll(timeout):
        try:
            outcome = receiver.recv()
        except EOFError:
            outcome = {"status": "error", "note": "the fit process died"}
    else:
        outcome = {"status": "timeout", "note": f"stopped after {timeout:g} s"}
    if child.is_alive():
        child.kill()
    child.join()
    receiver.close()
    if outcome["status"] == "error" and child.exitcode not in (0, None):
        outcome["note"] += f" (exit code {child.exitcode})"
    return {"seconds": None, "peak": None, "n_iter": None, "summary": None, **outcome}


def result_row(
    design, n, n_features, estimator, outcome, reference_seconds, nbytes, **extra
):
    """One row of a results file from an outcome of :func:`measure_fit`."""
    seconds = outcome["seconds"]
    ratio = None
    if seconds is not None and reference_seconds:
        ratio = seconds / reference_seconds
    peak = outcome.get("peak")
    row = {
        "design": design,
        "n": int(n),
        "n_features": int(n_features),
        "estimator": estimator,
        "status": outcome["status"],
        "seconds": None if seconds is None else float(seconds),
        "ratio": None if ratio is None else float(ratio),
        "peak_memory_fraction": None if peak is None else float(peak / nbytes),
    }
    if outcome.get("n_iter") is not None:
        row["n_iter"] = outcome["n_iter"]
    if outcome.get("note"):
        row["note"] = outcome["note"]
    row.update(extra)
    return row


def _format(value, spec):
    return "" if value is None else format(value, spec)


def print_header(extra=()):
    """The column titles of :func:`print_row`."""
    titles = f"{'design':<12} {'n':>8} {'p':>5} {'estimator':<38} {'status':<8} "
    titles += f"{'fit [s]':>9} {'ratio':>9} {'mem/X':>6}"
    print(titles + "".join(f" {name:>14}" for name in extra), flush=True)


def print_row(row, extra=()):
    """One results row as a line of text, with the ``extra`` fields named."""
    line = (
        f"{row['design']:<12} {row['n']:>8} {row['n_features']:>5} "
        f"{row['estimator']:<38} {row['status']:<8} "
        f"{_format(row['seconds'], '.4f'):>9} {_format(row['ratio'], '.2f'):>9} "
        f"{_format(row['peak_memory_fraction'], '.2f'):>6}"
    )
    line += "".join(f" {_format(row.get(name), '.3g'):>14}" for name in extra)
    print(line + (f"  {row['note']}" if row.get("note") else ""), flush=True)


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info():
    """Processor, cores, operating system and the versions that matter."""
    processor = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "processor": processor,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for name in ("numpy", "scipy", "scikit-learn", "statsmodels", "skrobust"):
        info[name] = _version(name)
    from threadpoolctl import threadpool_info

    info["threads"] = {
        f"{pool['internal_api']}": pool["num_threads"] for pool in threadpool_info()
    }
    return info


def write_results(
    name, description, rows, *, quick, output_dir=None, reference=REFERENCE
):
    """Write ``<output_dir>/<name>.json`` (default ``benchmarks/results/``).

    Quick runs write nothing unless ``output_dir`` is given, so that CI's
    smoke runs never overwrite the measured results.
    """
    if quick and output_dir is None:
        return None
    results = {
        "benchmark": name,
        "description": description,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%MZ"
        ),
        "quick": bool(quick),
        "reference": reference,
        "machine": machine_info(),
        "command": " ".join(["python", *sys.argv]),
        "rows": rows,
    }
    validate_results(results)
    path = Path(output_dir or RESULTS_DIR) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def validate_results(results):
    """Raise ``ValueError`` unless ``results`` follows the documented format."""
    problems = [
        f"field {key!r} missing or not {kind}"
        for key, kind in TOP_FIELDS.items()
        if not isinstance(results.get(key), kind)
    ]
    for i, row in enumerate(results.get("rows", [])):
        for key, kind in ROW_FIELDS.items():
            if key not in row or not isinstance(row[key], kind):
                problems.append(f"row {i}: field {key!r} missing or not {kind}")
        if row.get("status") not in STATUSES:
            problems.append(f"row {i}: status {row.get('status')!r}")
        if row.get("status") == "ok" and row.get("seconds") is None:
            problems.append(f"row {i}: status ok without seconds")
    references = {
        (r["design"], r["n"], r["n_features"])
        for r in results.get("rows", [])
        if r.get("estimator") == results.get("reference")
    }
    for i, row in enumerate(results.get("rows", [])):
        key = (row.get("design"), row.get("n"), row.get("n_features"))
        if row.get("ratio") is not None and key not in references:
            problems.append(f"row {i}: a ratio but no reference row for {key}")
    if problems:
        raise ValueError("; ".join(problems))


def add_output_arguments(parser):
    """The command-line options every benchmark shares (see :func:`parse`)."""
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, seconds (what CI runs)"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit BLAS and OpenMP to this many threads (default: the "
        "libraries' own); one thread measures more steadily on a shared machine",
    )
    parser.add_argument(
        "--output-dir",
        help="where to write <name>.json (default benchmarks/results/; "
        "quick runs write only when this is given)",
    )
    return parser


def _cell(row, value):
    if row is None:
        return ""
    if row["status"] == "skipped":
        return "skipped"
    if row["status"] == "timeout":
        return "> " + row.get("note", "").split()[-2] + " s"
    if row["status"] != "ok" or row.get(value) is None:
        return row["status"] if row["status"] != "ok" else ""
    number = row[value]
    if value == "ratio":
        return f"{number:.2f}x" if number < 10 else f"{number:.0f}x"
    if value == "objective_gap":
        return "0" if number == 0 else f"{number:.1e}"
    return f"{number:.3g}" if value == "seconds" else f"{number:.2f}"


def rst_table(results, value="ratio", transpose=False):
    """A ``list-table`` of one value: a row per problem, a column per estimator.

    With ``transpose``, a row per estimator and a column per problem, which
    suits many estimators on few problems. A ratio table starts with the
    reference's seconds.
    """
    rows = results["rows"]
    problems = list(dict.fromkeys((r["design"], r["n"], r["n_features"]) for r in rows))
    reference = results["reference"]
    estimators = [
        e
        for e in dict.fromkeys(r["estimator"] for r in rows)
        if value == "ratio"
        or any(r.get(value) is not None for r in rows if r["estimator"] == e)
    ]
    by_key = {(r["design"], r["n"], r["n_features"], r["estimator"]): r for r in rows}

    def reference_seconds(problem):
        row = by_key.get((*problem, reference))
        return "" if row is None else f"{row['seconds']:.3g}"

    columns = [e for e in estimators if not (value == "ratio" and e == reference)]
    if transpose:
        table = [["estimator"] + [_problem_label(*problem) for problem in problems]]
        if value == "ratio":
            table.append(
                [f"{reference} [s]"] + [reference_seconds(q) for q in problems]
            )
        for e in columns:
            table.append([e] + [_cell(by_key.get((*q, e)), value) for q in problems])
    else:
        header = ["problem"] + ([f"{reference} [s]"] if value == "ratio" else [])
        table = [header + columns]
        for problem in problems:
            line = [_problem_label(*problem)]
            if value == "ratio":
                line.append(reference_seconds(problem))
            line += [_cell(by_key.get((*problem, e)), value) for e in columns]
            table.append(line)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for line in table:
        lines += [f"   * - {line[0]}"] + [
            f"     - {cell}".rstrip() for cell in line[1:]
        ]
    return "\n".join(lines)


def _problem_label(design, n, n_features):
    return f"{design} {n:.0e} x {n_features}".replace("e+0", "e")


def parse(parser, argv=None):
    """Parse the command line and apply ``--blas-threads`` to this process.

    The limit holds in the forked processes of :func:`measure_fit` too.
    """
    args = parser.parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads)
    return args


def main(argv=None):
    parser = argparse.ArgumentParser(description="Validate benchmark results files.")
    parser.add_argument("files", nargs="+")
    parser.add_argument(
        "--rst",
        choices=["ratio", "seconds", "peak_memory_fraction", "objective_gap"],
        help="also print each file as a reStructuredText table of this value",
    )
    parser.add_argument(
        "--transpose",
        action="store_true",
        help="with --rst: a row per estimator, a column per problem",
    )
    args = parser.parse_args(argv)
    for file in args.files:
        results = json.loads(Path(file).read_text())
        validate_results(results)
        print(f"{file}: valid")
        if args.rst:
            print(rst_table(results, args.rst, args.transpose))


if __name__ == "__main__":
    main()
