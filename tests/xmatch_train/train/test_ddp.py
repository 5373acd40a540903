"""DDP under torchrun: two CPU processes on the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import yaml

from xmatch_train.train import load_checkpoint
from xmatch_train.train.logger import read_log


def test_torchrun_two_cpu_processes_train_in_step(store, tmp_path):
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "data": {
            "stores": [store],
            "batch_size": 2,
            "num_workers": 1,
            "buffer": 4,
            "val_fraction": 0.3,
            "test_fraction": 0.0,
        },
        "model": {
            "name": "transformer",
            "backbone": "convstem",
            "width": 32,
            "depth": 2,
            "heads": 2,
            "mlp_dim": 64,
        },
        "optim": {"lr": 1e-3},
        "train": {"steps": 6, "log_every": 1, "val_every": 3, "val_batches": 2, "threads": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "xmatch_train",
        "pretrain",
        "--config",
        str(path),
    ]
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["world_size"] == 2 and summary["steps"] == 6 and summary["done"]
    log = read_log(run / "log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 7))
    assert [r["step"] for r in log if r.get("split") == "val"] == [3, 6]
    ckpt = load_checkpoint(run / "ckpt" / "last.pt")
    assert ckpt["layout"]["world_size"] == 2 and ckpt["step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
