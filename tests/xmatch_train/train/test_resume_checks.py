"""A resume continues the same run: other settings are refused in one line, where and how fast
it runs may change; a checkpoint that does not fit the model is named, not a traceback."""

from __future__ import annotations

import yaml
from helpers import tiny_config, write
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.config import load_config
from xmatch_train.train import load_checkpoint, save_checkpoint


def _stopped_run(store, tmp_path):
    """A run stopped after 2 of 4 steps (a time-boxed job); returns its CLI arguments."""
    cfg = tiny_config(store, tmp_path / "run")
    cfg["train"].update(steps=4, val_every=0)
    args = ["pretrain", "--config", str(write(tmp_path, cfg))]
    result = CliRunner().invoke(app, args + ["train.stop_after=2"])
    assert result.exit_code == 0, result.output
    return args


def test_other_settings_are_refused_listing_them(store, tmp_path):
    args = _stopped_run(store, tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, args + ["optim.lr=0.003", "model.width=64"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "model.width 32 -> 64, optim.lr 0.002 -> 0.003" in line
    assert "revert them to resume, or start a new run with another run_dir=" in line
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["optim"]["lr"] == 0.002  # the refused settings were not recorded
    # where and how fast it runs may change: the run finishes
    result = runner.invoke(app, args + ["train.threads=2", "train.log_every=3"])
    assert result.exit_code == 0, result.output
    assert "resuming at step 2" in result.output
    assert load_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")["step"] == 4
    assert load_config(tmp_path / "run" / "config.yaml").train.threads == 2


def test_a_checkpoint_that_does_not_fit_the_model_is_named(store, tmp_path):
    args = _stopped_run(store, tmp_path)
    path = tmp_path / "run" / "ckpt" / "last.pt"
    ckpt = load_checkpoint(path)
    ckpt["model"].pop(next(iter(ckpt["model"])))  # e.g. written by older code
    save_checkpoint(path, ckpt)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: its model state does not fit this run")
    assert "Missing key(s)" in result.output and result.output.count("\n") == 1


def test_the_unused_grid_of_a_cosine_head_does_not_block_a_resume():
    from dataclasses import replace

    from xmatch_train.config import PretrainConfig, changed_settings, to_dict

    cosine = PretrainConfig()
    cosine = replace(cosine, model=replace(cosine.model, head="cosine", grid=8))
    saved = to_dict(replace(cosine, model=replace(cosine.model, grid=16)))
    assert changed_settings(cosine, saved) == {}
    prior = replace(cosine, model=replace(cosine.model, head="prior"))
    saved = to_dict(replace(prior, model=replace(prior.model, grid=16)))
    assert changed_settings(prior, saved) == {"model.grid": (16, 8)}
