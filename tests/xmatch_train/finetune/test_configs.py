"""The shipped fine-tuning configs load and fit together (classifier, pretraining, store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drrgen.build.config import load_config as load_build_config
from xmatch_train.config import load_config
from xmatch_train.finetune import FinetuneConfig
from xmatch_train.finetune.task import check_config
from xmatch_train.models import resolve_sizes

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def _vit(cfg) -> tuple:
    m = resolve_sizes(cfg.model)
    return (m.img_size, m.patch_size, m.width, m.depth, m.heads, m.mlp_dim, m.stem)


@pytest.mark.parametrize(
    "name,pretrain",
    [("finetune_synthetic", "finetune_synthetic_pretrain"), ("finetune_mura", "pretrain_vit_s")],
)
def test_classifier_matches_its_pretraining(name, pretrain):
    cfg = check_config(load_config(PIPELINES / f"{name}.yaml", cls=FinetuneConfig))
    pre = load_config(PIPELINES / f"{pretrain}.yaml")
    m = cfg.model
    assert pre.model.name == "vit_s"
    mine = (cfg.data.image_size, m.patch_size, m.width, m.depth, m.heads, m.mlp_dim, m.stem)
    assert _vit(pre) == mine
    if name == "finetune_mura":  # the paper's ViT-S; the CPU default is smaller (see its YAML)
        assert (m.width, m.depth, m.heads, m.patch_size, m.stem) == (384, 6, 4, 16, "patch")
    else:
        store = load_build_config(PIPELINES / "finetune_synthetic_store.yaml")
        assert pre.model.head == "prior" and pre.model.grid is None  # the store's grid
        assert store.size // store.patch == cfg.data.image_size // m.patch_size
    assert cfg.table.pretrain_run == pre.run_dir
    assert cfg.table.rows == (
        "single",
        "late",
        "early",
        "early_pretrain",
        "early_pretrain_guidance",
    )


def test_synthetic_store_fits_the_pretraining():
    store = load_build_config(PIPELINES / "finetune_synthetic_store.yaml").validate()
    pre = load_config(PIPELINES / "finetune_synthetic_pretrain.yaml")
    assert store.size == pre.data.image_size == pre.model.img_size
    assert store.patch == resolve_sizes(pre.model).patch_size
    assert store.corr_definition == "paper"
    assert (
        load_config(PIPELINES / "finetune_mura.yaml", cls=FinetuneConfig).table.pretrained_lr
        == 1e-5
    )


@pytest.mark.parametrize(
    "override,match",
    [
        ("data.test_fraction=1.0", "data.test_fraction"),
        ("data.val_fraction=-0.1", "data.val_fraction"),
        ("model.fusion=middle", "model.fusion"),
        ("data.image_size=100", "data.image_size"),
    ],
)
def test_inconsistent_settings_name_the_option(override, match):
    cfg = load_config(PIPELINES / "finetune_synthetic.yaml", [override], cls=FinetuneConfig)
    with pytest.raises(ValueError, match=match):
        check_config(cfg)
