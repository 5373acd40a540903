"""`xmatch pretrain`, `finetune` and `finetune-table`: wrong settings are one line naming the
key, exit 2, and fail before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmatch_train.cli import app

from .conftest import assert_user_error

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
TINY = {
    "data": {"stores": ["no_such_store.zarr"], "num_workers": 0},
    "model": {"name": "transformer", "backbone": "convstem", "width": 32, "depth": 1, "heads": 2},
    "train": {"steps": 1, "threads": 1, "device": "cpu"},
}

# name -> (overrides, substrings of the message)
CASES = {
    "float for an int": (["train.steps=4.5"], ["train.steps", "an integer", "4.5"]),
    "bool for an int": (["data.batch_size=true"], ["data.batch_size", "an integer", "True"]),
    "word for an int": (["data.batch_size=four"], ["data.batch_size", "an integer", "'four'"]),
    "scalar for a pair": (["optim.betas=0.9"], ["optim.betas", "a list of 2 numbers", "0.9"]),
    "word for a number": (["optim.lr=fast"], ["optim.lr", "a number", "'fast'"]),
    "unknown key": (["optim.momentum=0.9"], ["optim", "unknown key", "momentum"]),
    "override without =": (["train.steps"], ["train.steps", "key=value"]),
    "override not YAML": (["data.stores=[a"], ["data.stores=[a", "invalid YAML"]),
    "unknown backbone": (["model.backbone=resnet_nope"], ["model.backbone", "resnet_nope", "timm"]),
    "backbone index out of range": (
        ["model.backbone=resnet18", "model.backbone_index=7"],
        ["model.backbone_index=7", "resnet18", "0..4"],
    ),
    "heads do not divide the width": (["model.heads=5"], ["model.heads=5", "model.width=32"]),
    "head size not a multiple of 4": (
        ["model.width=24", "model.heads=4"],
        ["model.width=24", "model.heads=4", "multiple of 4"],
    ),
    "vit heads do not divide the width": (
        ["model.name=vit_s", "model.width=30", "model.heads=4"],
        ["model.heads=4", "model.width=30"],
    ),
    "unknown model": (["model.name=mlp"], ["model.name", "mlp"]),
    "device neither auto, cpu nor cuda": (["train.device=tpu"], ["train.device", "tpu"]),
    "no such store": ([], ["no_such_store.zarr"]),
}
CUDA_CASE = (["train.device=cuda"], ["train.device=cuda", "no CUDA device"])


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), **TINY}), encoding="utf-8")
    return path


def _check(config, overrides, names):
    result = CliRunner().invoke(app, ["pretrain", "--config", str(config), *overrides])
    assert_user_error(result, *names)
    assert not (config.parent / "run" / "ckpt").exists()


@pytest.mark.parametrize("name", CASES)
def test_bad_setting_is_one_line_and_exit_2(name, config):
    _check(config, *CASES[name])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(config):
    _check(config, *CUDA_CASE)


def test_config_errors_name_the_file(config):
    result = CliRunner().invoke(app, ["pretrain", "--config", str(config), "train.steps=4.5"])
    assert_user_error(result, str(config), "overrides ['train.steps=4.5']")
    missing = config.parent / "absent.yaml"
    result = CliRunner().invoke(app, ["pretrain", "--config", str(missing)])
    assert_user_error(result, str(missing), "cannot read")


def test_finetune_configs_are_checked_the_same_way(tmp_path):
    config = PIPELINES / "finetune_synthetic.yaml"
    for command in (["finetune"], ["finetune-table", "--out", str(tmp_path / "t")]):
        result = CliRunner().invoke(app, [*command, "--config", str(config), "train.steps=4.5"])
        assert_user_error(result, str(config), "train.steps", "an integer", "4.5")
    out = tmp_path / "file"
    out.write_text("x", encoding="utf-8")
    args = ["finetune-table", "--config", str(config), "--out", str(out)]
    assert_user_error(CliRunner().invoke(app, args), str(out), "--out", "folder")
    args = ["finetune-table", "--config", str(config), "--seeds", "0,one"]
    assert_user_error(CliRunner().invoke(app, args), "--seeds 0,one")
