"""Process runtime settings (Numba threads, malloc), applied where the work runs (never at
import)."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from contextlib import contextmanager

import numba


def select_threading_layer() -> None:
    """Prefer the thread-safe `omp` layer unless the user chose one.

    Numba's default `workqueue` layer aborts the process when parallel kernels are called from
    several threads at once (e.g. Dask threads); `omp` is safe. Has no effect once a parallel
    kernel has run (Numba fixes the layer at first launch).
    """
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "omp"


def adopt_numba_env() -> None:
    """Re-read Numba's settings from the environment if this process has not launched threads.

    Why: a Dask nanny sets ``NUMBA_NUM_THREADS`` (`drrgen.build.cluster.worker_env`) inside the
    worker after the spawned process has imported drrgen, and so Numba, with the machine's
    default. Numba re-reads the environment only when it compiles: when the first parallel
    kernel comes from the on-disk cache, its threads start with the stale count, and the next
    compilation in that process raises "Cannot set NUMBA_NUM_THREADS to a different value once
    the threads have been launched". Call this at the start of every worker task.
    """
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):
        numba.core.config.reload_config()


def pool_size() -> int:
    """The Numba threads this process can use: its pool size, fixed when Numba was imported.

    ``numba.config.NUMBA_NUM_THREADS`` can differ after `adopt_numba_env` re-reads the
    environment (a worker spawned with ``NUMBA_NUM_THREADS=1`` inherited, then told 2 by the
    nanny), but `numba.set_num_threads` only accepts 1..the import-time value.
    """
    from numba.np.ufunc import parallel

    return min(parallel.NUM_THREADS, numba.config.NUMBA_NUM_THREADS)


@contextmanager
def numba_threads(threads: int | None):
    """Run the block with `threads` Numba threads (None: leave the current setting), at most
    `pool_size`."""
    select_threading_layer()
    if threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), pool_size())))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# glibc's mallopt parameters (malloc.h) and the values `keep_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest on 64-bit: larger blocks get their own mapping
TRIM_THRESHOLD_BYTES = 64 << 20  # free memory kept at the top of a heap


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc reuse freed memory for the next allocation instead of returning it to the OS.

    Why: a Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (distributed's
    default ``pre-spawn-environ``). Any such setting switches off glibc's dynamic mmap
    threshold, so every temporary array of 128 KiB or more is mapped afresh and unmapped when
    freed, and the heap's free top is returned at once: the kernels page-fault their scratch
    memory in again on every call. That was 4,345 minor page faults per pair of a build, and
    64-74 ms of CPU per pair where a plain process took 40-61 ms (measured, README). With
    blocks up to `MMAP_THRESHOLD_BYTES` on the heap and up to `TRIM_THRESHOLD_BYTES` of free
    memory kept there, a worker faults 1-2 times per pair once its first samples have run.

    Called at the start of every build task (once per process). An in-process build
    (``--workers 0``) changes its own process's settings too. Returns whether both settings
    took: False off glibc (macOS, musl: no ``mallopt``) or where glibc refuses a value
    (32-bit: its largest mmap threshold is 16 MiB), and then nothing is changed. An allocator
    preloaded in glibc's place (jemalloc, tcmalloc) ignores the call.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The trim threshold only once the mmap one took.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
