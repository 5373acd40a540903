"""`xmatch finetune` shares the training loop's guards: a non-finite step stops the run naming
its studies, a resume with other settings is refused, evaluation names studies whose logits
are not finite, Ctrl-C prints the command that resumes the run."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from helpers import finite, interrupted_when
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.train import load_checkpoint, save_checkpoint

from .conftest import finetune_config


def write(tmp_path, cfg, name="ft.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def studies_of(easy_studies, split: str) -> set[str]:
    rows = easy_studies.read_text(encoding="utf-8").splitlines()[1:]
    return {r.split(",")[0] for r in rows if r.split(",")[2] == split}


@pytest.mark.parametrize(("lr", "what"), [(1e30, "loss"), (1e5, "gradient")])
def test_a_diverging_step_stops_the_run_naming_its_studies(easy_studies, tmp_path, lr, what):
    """Adam's first step at these rates blows the weights up: the second step's loss (1e30) or
    gradient (1e5; its loss is still finite) is NaN."""
    cfg = finetune_config(easy_studies, tmp_path / "run", train={"ckpt_every": 1})
    args = ["finetune", "--config", str(write(tmp_path, cfg)), f"optim.lr={lr}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    pattern = rf"error: step 2: non-finite {what} \((norm )?nan\) on the batch of {easy_studies}"
    found = re.match(pattern + r": studies ([\w, ]+); stopped before saving", line)
    assert found, line
    assert set(found[2].split(", ")) <= studies_of(easy_studies, "train")
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")
    assert ckpt["step"] == 1 and finite(ckpt["model"])


def test_resume_with_another_learning_rate_is_refused(easy_studies, tmp_path):
    cfg = finetune_config(easy_studies, tmp_path / "run")
    args = ["finetune", "--config", str(write(tmp_path, cfg))]
    runner = CliRunner()
    assert runner.invoke(app, args + ["train.stop_after=2"]).exit_code == 0
    result = runner.invoke(app, args + ["optim.lr=0.01", "data.num_workers=1"])
    assert result.exit_code == 2, result.output
    assert "trained with other settings (optim.lr 0.001 -> 0.01); revert them" in result.output
    result = runner.invoke(app, args + ["data.num_workers=1"])  # workers do not change a run
    assert result.exit_code == 0 and "resuming at step 2" in result.output, result.output


def test_eval_names_studies_with_non_finite_logits(easy_studies, tmp_path):
    cfg = finetune_config(easy_studies, tmp_path / "run", train={"steps": 2})
    assert (
        CliRunner().invoke(app, ["finetune", "--config", str(write(tmp_path, cfg))]).exit_code == 0
    )
    path = tmp_path / "run" / "ckpt" / "best.pt"
    ckpt = load_checkpoint(path)
    ckpt["model"]["head.1.bias"].fill_(math.nan)  # as versions without the guard could save
    save_checkpoint(path, ckpt)
    out = ["--out", str(tmp_path / "eval"), "--workers", "0"]
    result = CliRunner().invoke(app, ["eval", "--run", str(tmp_path / "run")] + out)
    assert result.exit_code == 2, result.output
    found = re.search(
        r"^error: studies ([\w, ]+): the model predicts non-finite logits", result.output, re.M
    )
    assert found and set(found[1].split(", ")) <= studies_of(easy_studies, "test"), result.output


def test_ctrl_c_prints_the_resume_command(easy_studies, tmp_path):
    cfg = finetune_config(easy_studies, tmp_path / "run", train={"steps": 100_000, "ckpt_every": 1})
    config = write(tmp_path, cfg)
    last = tmp_path / "run" / "ckpt" / "last.pt"
    with interrupted_when(last):
        result = CliRunner().invoke(app, ["finetune", "--config", str(config), "train.val_every=0"])
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.endswith(
        f"{last} holds step {load_checkpoint(last)['step']}; resume with: xmatch finetune "
        f"--config {config} train.val_every=0"
    ), line
    assert torch.load(last, weights_only=True)["step"] >= 2
