"""The training loop: overfitting, exact resume after a stop, the CLI and evaluation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.config import load_config
from xmatch_train.data import (
    BatchTransform,
    PairStream,
    StreamOptions,
    make_loader,
    read_meta,
    sample_mask,
)
from xmatch_train.models import ModelConfig, build_model, correspondence_loss
from xmatch_train.testing import write_toy_store
from xmatch_train.train import cosine_schedule, load_checkpoint, pretrain
from xmatch_train.train.logger import read_log

TINY_MODEL = dict(name="transformer", backbone="convstem", width=32, depth=2, heads=2, mlp_dim=64)


def tiny_config(store, run_dir, **data):
    return {
        "run_dir": str(run_dir),
        "data": {
            "stores": [store],
            "batch_size": 4,
            "num_workers": 0,
            "buffer": 8,
            "val_fraction": 0.3,
            "test_fraction": 0.3,
            "augment": {"brightness": 0.1, "contrast": 0.2, "invert": 0.2, "hflip": 0.5},
            **data,
        },
        "model": TINY_MODEL,
        "optim": {"lr": 2e-3, "warmup_steps": 2},
        "train": {
            "steps": 10,
            "log_every": 1,
            "val_every": 5,
            "val_batches": 2,
            "ckpt_every": 100,
            "threads": 1,
        },
    }


def write(tmp_path, cfg, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_tiny_model_overfits_a_few_pairs(store, one_thread):
    torch.manual_seed(0)
    meta = read_meta(store)
    options = StreamOptions(batch_size=4, train=False, mode="all", shuffle=False, buffer=0)
    raw = next(iter(make_loader(PairStream([meta], [sample_mask(meta, None)], options))))
    batch = BatchTransform()(raw)
    model = build_model(ModelConfig(**{**TINY_MODEL, "width": 64, "mlp_dim": 128}))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(200, 10))
    losses = []
    for _ in range(200):
        loss = correspondence_loss(
            model(batch["view0"], batch["view1"])["corr"], batch["corr_0to1"]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    variance = batch["corr_0to1"].var().item()
    assert losses[-1] < 0.01 * losses[0] and losses[-1] < 0.03 * variance


def test_stop_and_resume_continues_exactly(store, tmp_path):
    cfg = tiny_config(store, tmp_path / "full", num_workers=2)
    pretrain(load_config(write(tmp_path, cfg)))
    cfg["run_dir"] = str(tmp_path / "split")
    path = write(tmp_path, cfg, "split.yaml")
    pretrain(load_config(path, ["train.stop_after=3"]))  # a time-boxed job stopping at step 3
    ckpt = load_checkpoint(tmp_path / "split" / "ckpt" / "last.pt")
    assert ckpt["step"] == 3 and (ckpt["epoch"], ckpt["position"]) == (1, 1)  # 2 batches/epoch
    with open(tmp_path / "split" / "log.jsonl", "a") as f:  # a killed run's stale tail
        f.write(json.dumps({"step": 4, "loss": 123.0}) + "\n")
    pretrain(load_config(path))  # resumes from ckpt/last.pt
    full, split = (read_log(tmp_path / d / "log.jsonl") for d in ("full", "split"))
    assert [r["step"] for r in split if "loss" in r] == list(range(1, 11))
    assert [r["loss"] for r in split if "loss" in r] == [r["loss"] for r in full if "loss" in r]
    a, b = (load_checkpoint(tmp_path / d / "ckpt" / "last.pt")["model"] for d in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = (tmp_path / "split" / "summary.json").read_text(encoding="utf-8")
    pretrain(load_config(path))  # a finished run is left as it is
    assert (tmp_path / "split" / "summary.json").read_text(encoding="utf-8") == summary
    with pytest.raises(ValueError, match="data layout changed"):
        pretrain(load_config(path, ["data.batch_size=2", "train.steps=12"]))


def test_grid_mismatch_is_explained(store, tmp_path):
    cfg = load_config(write(tmp_path, tiny_config(store, tmp_path / "r")), ["data.image_size=32"])
    with pytest.raises(ValueError, match="token grid must equal the patch grid"):
        pretrain(cfg)


def test_cli_pretrain_then_eval_on_own_test_volumes_and_on_new_cts(store, tmp_path):
    runner = CliRunner()
    path = write(tmp_path, tiny_config(store, tmp_path / "run"))
    result = runner.invoke(app, ["pretrain", "--config", str(path), "train.steps=6"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "split.json",
        "log.jsonl",
        "ckpt",
        "summary.json",
    }
    assert load_config(run / "config.yaml").train.steps == 6
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    assert [len(split["keys"][k]) for k in ("train", "val", "test")] == [1, 1, 1]

    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            "--store",
            store,
            "--run",
            str(run),
            "--out",
            str(out),
            "--workers",
            "0",
            "--figures",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["run"]
    assert metrics["pairs"] == 8  # the one test CT's 8 samples only
    assert 0 <= metrics["ap"] <= 1 and metrics["mse"] > 0
    table = (out / "table.md").read_text(encoding="utf-8")
    assert table.startswith("| Run | Attention model") and "| run | Standard transformer |" in table
    assert (out / "run" / "sample_1.png").stat().st_size > 0 and (out / "curves.png").is_file()

    new = write_toy_store(tmp_path / "new.zarr", n_volumes=2, samples_per_volume=4, block=2)
    result = runner.invoke(
        app,
        [
            "eval",
            "--store",
            str(new),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "eval_new"),
            "--workers",
            "0",
            "--figures",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads((tmp_path / "eval_new" / "metrics.json").read_text(encoding="utf-8"))["run"][
            "pairs"
        ]
        == 8
    )


def test_checkpoints_load_with_weights_only(store, tmp_path):
    cfg = load_config(write(tmp_path, tiny_config(store, tmp_path / "r")), ["train.steps=2"])
    run = pretrain(cfg)
    state = torch.load(Path(run) / "ckpt" / "last.pt", weights_only=True)
    assert state["step"] == 2 and "optimizer" in state and "rng" in state
    model = build_model(replace(cfg.model))
    model.load_state_dict(state["model"])
