"""Kill a build mid-way (driver or worker, SIGKILL) and resume it: nothing lost or duplicated."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import zarr

from drrgen.build import BuildConfig, ClusterOptions, build
from drrgen.store_contract import ARRAY_NAMES, written_blocks

CFG = BuildConfig(samples_per_ct=8, block=1, size=32, patch=8, seed=11)
CLI_ARGS = ["samples_per_ct=8", "block=1", "size=32", "patch=8", "seed=11"]


def _arrays(url):
    group = zarr.open_group(str(url), mode="r")
    return {name: group[name][:] for name in ARRAY_NAMES}


def _n_written(url) -> int:
    try:
        return int(written_blocks(zarr.open_group(str(url), mode="r")).sum())
    except Exception:  # not created yet
        return 0


@pytest.fixture(scope="module")
def clean(ct_dir, tmp_path_factory):
    url = tmp_path_factory.mktemp("clean") / "clean.zarr"
    build(ct_dir, url, CFG, ClusterOptions(workers=0), progress=False, echo=lambda s: None)
    return _arrays(url)


@pytest.mark.timeout(420)
def test_sigkill_of_the_driver_then_resume(ct_dir, clean, tmp_path):
    out = tmp_path / "killed.zarr"
    cmd = [
        sys.executable,
        "-c",
        "from drrgen.cli import app; app()",
        "build",
        "--ct-dir",
        str(ct_dir),
        "--out",
        str(out),
        *CLI_ARGS,
        "--workers",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = os.environ | {"NUMBA_THREADING_LAYER": "omp"}
    log = open(tmp_path / "driver.log", "w")  # a file, not a pipe that could fill up
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 240  # generous: a loaded CI machine starts slowly
        while _n_written(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the driver, mid-build
        proc.wait(10)
    finally:
        log.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its orphaned worker processes
        except ProcessLookupError:
            pass
    time.sleep(0.3)
    n_killed = _n_written(out)
    assert 2 <= n_killed < 16, f"kill did not land mid-build ({n_killed}/16 blocks):\n" + (
        tmp_path / "driver.log"
    ).read_text(encoding="utf-8")
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is False

    summary = build(
        ct_dir, out, CFG, ClusterOptions(workers=0), progress=False, echo=lambda s: None
    )
    assert summary.complete and summary.present_before >= n_killed
    assert summary.present_before + summary.written == 16
    resumed = _arrays(out)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(resumed[name], clean[name], err_msg=name)


def _kill_a_worker_when(url, n_blocks, done: threading.Event):
    me = psutil.Process()
    while not done.is_set():
        n = _n_written(url)
        if n >= n_blocks:
            for child in me.children(recursive=True):
                try:
                    if "spawn_main" in " ".join(child.cmdline()):
                        child.kill()  # SIGKILL a Dask worker process mid-build
                        return n
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.02)
    return None


@pytest.mark.timeout(180)
def test_sigkill_of_a_worker_is_survived(ct_dir, clean, tmp_path):
    out = tmp_path / "worker.zarr"
    done = threading.Event()
    killed = []
    killer = threading.Thread(target=lambda: killed.append(_kill_a_worker_when(out, 2, done)))
    killer.start()
    try:
        summary = build(
            ct_dir,
            out,
            CFG,
            ClusterOptions(workers=1, threads=1),
            progress=False,
            echo=lambda s: None,
        )
    finally:
        done.set()
        killer.join()
    assert killed[0] is not None and killed[0] < 16, f"no worker killed mid-build: {killed}"
    assert summary.complete and not summary.failed
    result = _arrays(out)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(result[name], clean[name], err_msg=name)
