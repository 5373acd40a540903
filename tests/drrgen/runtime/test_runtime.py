"""Numba runtime settings in processes that learn NUMBA_NUM_THREADS after importing drrgen."""

import os
import platform
import resource
import subprocess
import sys
import textwrap

import numba
import pytest

from drrgen.build import tasks
from drrgen.build.config import BuildConfig

# A Dask worker: drrgen (and Numba) imported before the nanny sets the worker's environment,
# a parallel kernel loaded from the on-disk cache, then a compilation in the same process.
WORKER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import drrgen
    from numba import njit
    from drrgen.runtime import adopt_numba_env

    os.environ["NUMBA_NUM_THREADS"] = "1"
    if sys.argv[1] == "adopt":
        adopt_numba_env()
    vol = drrgen.Volume(np.ones((4, 4, 4), np.float32), np.eye(4))
    drrgen.project(vol, drrgen.carm_view(0, 0, isocenter=(1.5, 1.5, 1.5), shape=(4, 4)))
    print(njit(lambda x: x + 1)(1))
    """
)


def _run(mode: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    return subprocess.run(
        [sys.executable, "-c", WORKER, mode], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(
    numba.config.NUMBA_DEFAULT_NUM_THREADS == 1, reason="the stale default must differ from 1"
)
def test_adopting_the_env_before_the_first_kernel_keeps_later_compiles_working():
    assert _run("adopt").returncode == 0  # also fills the kernel cache for the runs below
    plain = _run("plain")  # the failure this guards against: the kernel came from the cache
    assert plain.returncode != 0 and "NUMBA_NUM_THREADS" in plain.stderr
    adopted = _run("adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert adopted.stdout.strip() == "2"


def test_every_build_task_adopts_the_env_and_keeps_freed_memory_first(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(tasks, "adopt_numba_env", lambda: calls.append("numba"))
    monkeypatch.setattr(tasks, "keep_freed_memory", lambda: calls.append("malloc"))
    task = tasks.BlockTask(0, 0, 0, str(tmp_path / "missing.nii.gz"), None)
    job = tasks.Job("unused.zarr", None, BuildConfig().to_dict(), None, 1)
    result = tasks.run_block(task, job)
    assert calls == ["numba", "malloc"] and "no such file" in result.error


# The reverse: Numba imported under an inherited NUMBA_NUM_THREADS=1 (its pool has 1 thread),
# then the nanny sets 2 (`drrgen build --workers 1` on 2 cores) and the task asks for 2.
SMALL_POOL = textwrap.dedent(
    """
    import os
    import numpy as np
    import numba
    import drrgen
    from drrgen.runtime import adopt_numba_env

    os.environ["NUMBA_NUM_THREADS"] = "2"
    adopt_numba_env()
    vol = drrgen.Volume(np.ones((4, 4, 4), np.float32), np.eye(4))
    drrgen.project(vol, drrgen.carm_view(0, 0, isocenter=(1.5, 1.5, 1.5), shape=(4, 4)), threads=2)
    print(numba.get_num_threads())
    """
)


def test_a_pool_smaller_than_the_threads_asked_for_is_used_as_is():
    env = os.environ | {"NUMBA_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", SMALL_POOL], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr  # was: "The number of threads must be between 1 and 1"
    assert run.stdout.strip() == "1"


# A Dask worker's malloc (the nanny sets MALLOC_TRIM_THRESHOLD_ before spawning it): a task
# thread allocates, fills and frees scratch arrays above one that stays, as the kernels do on
# every call. Both settings count: with the mmap threshold alone the heap's free top is still
# trimmed and faulted in again (about 6x the faults of both).
SCRATCH = textwrap.dedent(
    """
    import resource, sys, threading
    import numpy as np
    from drrgen.runtime import keep_freed_memory

    def task(out):
        if sys.argv[1] == "keep":
            out.append(keep_freed_memory())
        kept = np.ones(1 << 14, np.float32)  # 64 KiB that stays below the scratch
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            big = np.ones(1 << 18, np.float32)  # 1 MiB, written: its pages are touched
            small = np.ones(1 << 16, np.float32)  # 256 KiB
            del big, small
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    out = []
    worker = threading.Thread(target=task, args=(out,))
    worker.start()
    worker.join()
    print(*out)
    """
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_a_worker_told_to_trim_memory_stops_faulting_its_scratch_in_again():
    env = os.environ | {"MALLOC_TRIM_THRESHOLD_": "65536"}

    def faults(mode: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-c", SCRATCH, mode], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    per_round = (5 << 18) // resource.getpagesize()  # pages of one round's 1.25 MiB
    assert int(faults("plain")[0]) >= 40 * per_round  # faulted in afresh every round
    took, kept = faults("keep")
    assert took == "True" and int(kept) < 2 * per_round  # the first round only
