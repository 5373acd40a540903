"""YAML configs with dotted overrides into typed dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmatch_train.config import ConfigError, PretrainConfig, load_config, save_config
from xmatch_train.models import resolve_sizes

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


@pytest.mark.parametrize("name", ["pretrain_cpu.yaml", "pretrain_gpu.yaml", "pretrain_vit_s.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(PIPELINES / name)
    assert isinstance(cfg, PretrainConfig) and cfg.data.stores


def test_gpu_config_has_the_papers_settings():
    cfg = load_config(PIPELINES / "pretrain_gpu.yaml")
    m, o, d = resolve_sizes(cfg.model), cfg.optim, cfg.data
    assert (m.name, m.backbone, m.backbone_index, m.width, m.depth, m.heads, m.mlp_dim) == (
        "transformer",
        "resnet50",
        3,
        512,
        8,
        8,
        1024,
    )
    assert (o.lr, d.batch_size, d.image_size) == (1e-4, 16, 256)


def test_overrides_types_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_dir: r\nmodel: {name: cnn}\noptim: {lr: 0.01}\n", encoding="utf-8")
    cfg = load_config(
        path,
        [
            "optim.lr=3e-4",
            "model.depth=2",
            "data.stores=[a.zarr, b.zarr]",
            "data.augment.hflip=0.5",
            "optim.betas=[0.8, 0.9]",
            "train.steps=null",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.model.depth == 2 and cfg.model.name == "cnn"
    assert cfg.data.stores == ("a.zarr", "b.zarr") and cfg.data.augment.hflip == 0.5
    assert cfg.optim.betas == (0.8, 0.9) and cfg.train.steps is None
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


def test_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: {lr: 1e-4, momentum: 0.9}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: optim: unknown key\(s\) \['momentum'\]"):
        load_config(path)
    with pytest.raises(
        ConfigError,
        match=r"overrides \['train.steps=many'\]: train.steps: "
        "expected an integer",
    ):
        load_config(None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.steps"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("name", ["pretrain_cpu.yaml", "pretrain_gpu.yaml", "pretrain_vit_s.yaml"])
def test_shipped_models_give_the_16x16_grid_of_a_256px_patch16_store(name):
    import torch

    from xmatch_train.models import build_model

    cfg = load_config(PIPELINES / name)
    side = cfg.data.image_size or 256
    model = build_model(resolve_sizes(cfg.model, grid=16)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, side, side), torch.rand(1, 1, side, side))
    assert out["corr"].shape == (1, 256, 256)


def test_defaults_include_merges_sections_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("run_dir: a\noptim: {lr: 0.1, warmup_steps: 7}\n")
    (tmp_path / "top.yaml").write_text("defaults: base.yaml\noptim: {lr: 0.5}\n")
    cfg = load_config(tmp_path / "top.yaml", ["train.steps=3"])
    assert (cfg.run_dir, cfg.optim.lr, cfg.optim.warmup_steps, cfg.train.steps) == ("a", 0.5, 7, 3)
    (tmp_path / "base.yaml").write_text("defaults: top.yaml\n")
    with pytest.raises(ConfigError, match="defaults include cycle"):
        load_config(tmp_path / "top.yaml")
    (tmp_path / "top.yaml").write_text("defaults: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "top.yaml")


def test_grazpedwri_config_is_the_mura_one_on_another_dataset():
    from xmatch_train.config import to_dict
    from xmatch_train.finetune import FinetuneConfig

    pipelines = Path(__file__).resolve().parents[3] / "pipelines"
    graz = to_dict(load_config(pipelines / "finetune_grazpedwri.yaml", cls=FinetuneConfig))
    mura = to_dict(load_config(pipelines / "finetune_mura.yaml", cls=FinetuneConfig))
    assert graz["data"]["format"] == "grazpedwri" and graz["model"] == mura["model"]
    assert graz["optim"] == mura["optim"] and graz["table"]["pretrained_lr"] == 1e-5


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("optim.weight_decay=-1", "optim.weight_decay"),
        ("data.batch_size=0", "data.batch_size"),
        ("train.steps=0", "train.steps"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, key):
    from xmatch_train.finetune import FinetuneConfig

    for cls in (PretrainConfig, FinetuneConfig):
        with pytest.raises(ConfigError, match=rf"{key}: must be"):
            load_config(None, [override], cls=cls)
    assert load_config(None, ["train.steps=null"]).train.steps is None
