r"""glibc's heap kept through one chunk's task on a dask worker (issue #15).

distributed's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
so that freed memory goes back to the system at once. Setting it turns off
glibc's adaptive thresholds: every array of 128 KiB or more is then mapped
and unmapped, and every free of more than 64 KiB at the top of the heap
shrinks it. A pass over a chunk allocates and frees such temporaries for
each row block (the objective's blocks of a few megabytes), and the page faults
of memory handed back and taken again made a Hessian pass ~4x slower than
with glibc's defaults (bench_dask's two worker configurations: a Huber fit
5x the numpy fit instead of 2x at n = 2e6).

:func:`run_kernel` runs a task with both thresholds raised, and then sets
them back to the values the environment gave (``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_`` or glibc's 128 KiB) and calls ``malloc_trim(0)``:
the memory of the task still goes back to the system, once per task instead
of once per block. Only where the trim threshold came from the environment
(the nanny's setting; glibc's adaptive default is left alone, as it cannot
be restored) and only with glibc; elsewhere the kernel just runs.
"""

import ctypes
import os

# mallopt's parameters (malloc.h) and glibc's default mmap threshold.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_MMAP_THRESHOLD = 128 * 1024

# The thresholds during a task: above any temporary of a chunk's pass.
_TASK_THRESHOLD = 64 * 2**20

_LIBC = None


def _libc():
    """glibc's ``mallopt`` and ``malloc_trim``, or None (another C library)."""
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            _LIBC = libc if hasattr(libc, "mallopt") else False
        except OSError:
            _LIBC = False
    return _LIBC or None


def _environment_thresholds():
    """``(trim, mmap)`` thresholds the environment set, or None without a trim one."""
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    if trim is None:
        return None
    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_", _DEFAULT_MMAP_THRESHOLD)
    try:
        return int(trim), int(mmap)
    except ValueError:
        return None


def run_kernel(kernel, *args):
    """``kernel(*args)`` with glibc's heap kept until it returns (see the module)."""
    libc = _libc()
    restore = _environment_thresholds() if libc is not None else None
    if restore is None:
        return kernel(*args)
    libc.mallopt(_M_MMAP_THRESHOLD, _TASK_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _TASK_THRESHOLD)
    try:
        return kernel(*args)
    finally:
        libc.mallopt(_M_TRIM_THRESHOLD, restore[0])
        libc.mallopt(_M_MMAP_THRESHOLD, restore[1])
        libc.malloc_trim(0)
