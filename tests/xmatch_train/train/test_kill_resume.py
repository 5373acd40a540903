"""A run killed with SIGKILL and rerun ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from xmatch_train.train import load_checkpoint
from xmatch_train.train.logger import read_log


def _cmd(path):
    return [sys.executable, "-m", "xmatch_train", "pretrain", "--config", str(path)]


@pytest.mark.slow
def test_kill_9_then_rerun_matches_the_uninterrupted_run(store, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = {}
    for name in ("full", "killed"):
        cfg = {
            "run_dir": str(tmp_path / name),
            "data": {
                "stores": [store],
                "batch_size": 4,
                "num_workers": 1,
                "buffer": 8,
                "val_fraction": 0.3,
                "test_fraction": 0.3,
                "augment": {"brightness": 0.1, "invert": 0.2, "hflip": 0.5},
            },
            "model": {
                "name": "superglue",
                "backbone": "convstem",
                "width": 32,
                "depth": 2,
                "heads": 2,
                "mlp_dim": 64,
            },
            "train": {
                "steps": 60,
                "log_every": 1,
                "val_every": 20,
                "val_batches": 2,
                "ckpt_every": 5,
                "threads": 1,
            },
        }
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg), encoding="utf-8")
    subprocess.run(_cmd(paths["full"]), env=env, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(
        _cmd(paths["killed"]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "killed" / "ckpt" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and load_checkpoint(last)["step"] >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["step"]
    assert 10 <= killed_at < 60
    subprocess.run(_cmd(paths["killed"]), env=env, check=True, capture_output=True, timeout=300)

    a = load_checkpoint(tmp_path / "full" / "ckpt" / "last.pt")
    b = load_checkpoint(last)
    assert a["step"] == b["step"] == 60
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    losses = [
        [r["loss"] for r in read_log(tmp_path / n / "log.jsonl") if "loss" in r]
        for n in ("full", "killed")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 60
