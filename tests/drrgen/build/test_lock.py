"""Two builds of one store: the second refuses with one line naming the lock file; a lock
left by a killed build is taken over (issue 15)."""

import json
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from drrgen.build import ClusterOptions, build
from drrgen.build.lock import STALE_S, BuildLock, LockError, hold_lock, lock_url
from drrgen.cli import app

IN_PROCESS = ClusterOptions(workers=0)

# A second process holding a store's lock the way a running build does.
HOLDER = "import sys, time\nfrom drrgen.build.lock import hold_lock\n" + (
    "with hold_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"
)


def test_a_build_refuses_while_another_process_holds_the_lock_and_takes_a_dead_ones(
    ct_dir, tiny_cfg, tmp_path
):
    out = tmp_path / "s.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["build", "--ct-dir", str(ct_dir), "--out", str(out), "--workers", "0"]
        result = CliRunner().invoke(app, [*args, "samples_per_ct=2", "--no-progress"])
        assert result.exit_code == 2
        assert result.stderr.startswith(
            f"error: {out}.lock: another build is writing this store (pid {holder.pid} on "
        )
        assert result.stderr.count("\n") == 1 and not out.exists()  # nothing touched
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind
        holder.wait()
    assert (tmp_path / "s.zarr.lock").exists()
    summary = build(ct_dir, out, tiny_cfg, IN_PROCESS, progress=False, echo=lambda s: None)
    assert summary.complete and not (tmp_path / "s.zarr.lock").exists()


def test_two_builds_started_together_build_once(ct_dir, tiny_cfg, tmp_path):
    out, start = tmp_path / "s.zarr", threading.Barrier(2)
    outcomes = []

    def run():
        start.wait()
        try:
            s = build(ct_dir, out, tiny_cfg, IN_PROCESS, progress=False, echo=lambda s: None)
            outcomes.append(("built", s.written))
        except LockError as exc:
            outcomes.append(("refused", str(exc)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = [n for kind, n in outcomes if kind == "built"]
    refused = [message for kind, message in outcomes if kind == "refused"]
    assert len(outcomes) == 2 and sum(written) == 8  # every sample built once, not twice
    assert all(m.startswith(f"{lock_url(out)}: another build") for m in refused)


def _foreign_lock(url, refreshed: float) -> None:
    holder = {"host": "another-host", "pid": 1, "token": "x", "started": 0.0}
    (url.parent / (url.name + ".lock")).write_text(json.dumps(holder | {"refreshed": refreshed}))


def test_a_lock_of_another_host_counts_until_it_is_no_longer_refreshed(tmp_path):
    url = tmp_path / "s.zarr"
    _foreign_lock(url, time.time())
    with pytest.raises(LockError, match="pid 1 on another-host"):
        BuildLock(url).acquire()
    _foreign_lock(url, time.time() - STALE_S - 1)  # its build died without a trace
    lock = BuildLock(url)
    lock.acquire()
    assert json.loads((tmp_path / "s.zarr.lock").read_text())["token"] == lock.mine["token"]
    lock.release()
    assert not (tmp_path / "s.zarr.lock").exists()


def test_a_held_lock_is_refreshed(tmp_path):
    with hold_lock(tmp_path / "s.zarr", refresh_s=0.05) as lock:
        first = lock.mine["refreshed"]
        time.sleep(0.3)
        seen = json.loads((tmp_path / "s.zarr.lock").read_text())["refreshed"]
    assert seen > first
