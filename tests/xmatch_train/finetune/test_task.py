"""Fine-tuning end to end: learning, exact resume, the CLI, `xmatch eval`, the Table-3 driver."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.config import load_config
from xmatch_train.finetune import FinetuneConfig, finetune, row_config
from xmatch_train.finetune.report import evaluate_finetune_runs
from xmatch_train.train import load_checkpoint
from xmatch_train.train.logger import read_log

from .conftest import finetune_config


def write(tmp_path, cfg, name="ft.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_tiny_classifier_learns_an_easy_task(easy_studies, tmp_path, one_thread):
    cfg = finetune_config(
        easy_studies,
        tmp_path / "run",
        data={"augment": {"brightness": 0.0, "contrast": 0.0, "invert": 0.0}},
        optim={"lr": 3e-3, "warmup_steps": 5},
        train={"steps": 60, "val_every": 30, "log_every": 10},
    )
    run = finetune(load_config(write(tmp_path, cfg), cls=FinetuneConfig))
    table = evaluate_finetune_runs([run], tmp_path / "eval", workers=0)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))["runs"][
        str(run)
    ]
    assert metrics["accuracy"] >= 0.85 and metrics["kappa"] >= 0.7, table


def test_a_pretraining_that_did_not_beat_its_baseline_is_refused(
    fracture_dataset, pretrain_run, tmp_path
):
    cfg = finetune_config(
        fracture_dataset,
        tmp_path / "run",
        model={"init_from": str(pretrain_run), "min_pretrain_gain": 0.02},
        data={"image_size": 64, "batch_size": 3},
    )
    with pytest.raises(ValueError, match="does not beat the no-image mean-matrix baseline"):
        finetune(load_config(write(tmp_path, cfg), cls=FinetuneConfig))


def test_guided_run_resumes_exactly_and_evaluates(fracture_dataset, pretrain_run, tmp_path):
    cfg = finetune_config(
        fracture_dataset,
        tmp_path / "full",
        # The 4-step pretraining learnt nothing: allowed here only to test the mechanics.
        model={"init_from": str(pretrain_run), "min_pretrain_gain": None},
        guidance={"enabled": True, "alpha_lr": 0.05},
        data={"image_size": 64, "batch_size": 3},
    )
    finetune(load_config(write(tmp_path, cfg), cls=FinetuneConfig))
    cfg["run_dir"] = str(tmp_path / "split")
    path = write(tmp_path, cfg, "split.yaml")
    finetune(load_config(path, ["train.stop_after=4"], cls=FinetuneConfig))
    finetune(load_config(path, cls=FinetuneConfig))  # resumes from ckpt/last.pt
    full, split = (read_log(tmp_path / d / "log.jsonl") for d in ("full", "split"))
    losses = [
        [r["loss"] for r in log if "loss" in r and r.get("split") != "val"] for log in (full, split)
    ]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    a, b = (load_checkpoint(tmp_path / d / "ckpt" / "last.pt")["model"] for d in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.allclose(a["alpha"], torch.ones(2))  # the alphas learn
    record = json.loads((tmp_path / "full" / "split.json").read_text(encoding="utf-8"))
    volumes = {s: {sid.split("_")[0] for sid in record["studies"][s]} for s in record["studies"]}
    assert not (volumes["train"] & volumes["test"]) and not (volumes["val"] & volumes["test"])

    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--run",
            str(tmp_path / "full"),
            "--out",
            str(tmp_path / "eval"),
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| ✓ | ✓ | Early |" in result.output
    assert "eval full" in result.stderr and "100%" in result.stderr  # progress
    assert f"wrote {tmp_path / 'eval' / 'table.md'}" in result.stdout
    (predictions,) = (tmp_path / "eval").glob("*_full/predictions.csv")
    with open(predictions, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == record["counts"]["test"]["studies"] == 6
    assert all(0 <= float(r["probability"]) <= 1 for r in rows)


def test_table_driver_rows_seeds_and_kept_runs(easy_studies, pretrain_run, tmp_path):
    cfg = finetune_config(easy_studies, tmp_path / "runs", train={"steps": 2, "val_every": 2})
    cfg["table"] = {"seeds": [0, 1], "pretrain_run": str(pretrain_run), "pretrained_lr": 1e-4}
    cfg.setdefault("model", {})["min_pretrain_gain"] = None  # the 4-step pretraining
    path = write(tmp_path, cfg)
    args = ["finetune-table", "--config", str(path), "--rows", "single,early_pretrain_guidance"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "t" / "table.md").read_text(encoding="utf-8")
    lines = text.split("\n\n")[1].splitlines()  # the results table, before the comparisons
    assert lines[-2].startswith("| – | – | Single |") and lines[-2].endswith("| 2 |")
    assert lines[-1].startswith("| ✓ | ✓ | Early |")
    assert "alpha per layer" in text
    assert (tmp_path / "t" / "curves.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text(encoding="utf-8"))
    assert len(metrics["runs"]) == 4 and len(metrics["rows"]) == 2
    guided = load_config(
        tmp_path / "runs/early_pretrain_guidance/seed1/config.yaml", cls=FinetuneConfig
    )
    assert guided.train.seed == 1 and guided.optim.lr == 1e-4 and guided.guidance.enabled
    again = CliRunner().invoke(app, args + ["--out", str(tmp_path / "t2")])
    assert again.output.count("done, kept") == 4
    # Where or how fast a run goes does not make it another run ...
    same = CliRunner().invoke(app, args + ["--out", str(tmp_path / "t3"), "train.threads=1"])
    assert same.exit_code == 0 and same.output.count("done, kept") == 4
    # ... but runs made with other settings are never mixed into a table.
    other = CliRunner().invoke(app, args + ["--out", str(tmp_path / "t4"), "train.steps=3"])
    assert other.exit_code != 0 and "train.steps" in other.output


def test_config_errors_are_reported(easy_studies, tmp_path):
    base = load_config(
        write(tmp_path, finetune_config(easy_studies, tmp_path / "r")), cls=FinetuneConfig
    )
    with pytest.raises(ValueError, match="needs table.pretrain_run"):
        row_config(base, "early_pretrain", 0)
    runner = CliRunner()
    path = write(tmp_path, finetune_config(easy_studies, tmp_path / "r"))
    result = runner.invoke(
        app, ["finetune", "--config", str(path), "guidance.enabled=true", "model.fusion=late"]
    )
    assert result.exit_code == 2 and "needs model.fusion=early" in result.output
    result = runner.invoke(
        app, ["eval", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--store is required" in result.output
    assert np.isfinite(base.optim.lr)
