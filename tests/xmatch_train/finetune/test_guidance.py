"""Pretrained runs: encoder initialisation and the frozen correspondence guide."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from xmatch_train.config import load_config
from xmatch_train.finetune import CorrespondenceGuide, FinetuneConfig, pool_correspondence
from xmatch_train.finetune.guidance import load_pretrain_run
from xmatch_train.finetune.task import build_classifier
from xmatch_train.models import build_model, encoder_state_dict

from .conftest import TINY_VIT


def test_pool_correspondence_takes_the_best_fine_pair():
    fine = torch.zeros(1, 16, 16)  # 4 x 4 grid -> 2 x 2
    fine[0, 5, 10] = 0.9  # fine (1,1) -> coarse (0,0); fine (2,2) -> coarse (1,1)
    fine[0, 0, 0] = 0.3
    coarse = pool_correspondence(fine, (2, 2))
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 3], expected[0, 0, 0] = 0.9, 0.3
    torch.testing.assert_close(coarse, expected)
    with pytest.raises(ValueError, match="cannot pool"):
        pool_correspondence(fine, (3, 3))


def test_guide_is_the_frozen_pretrained_model(pretrain_run):
    cfg, ckpt = load_pretrain_run(pretrain_run)
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    model.eval()
    guide = CorrespondenceGuide.from_run(pretrain_run, (4, 4)).train()
    assert not guide.training and not any(p.requires_grad for p in guide.parameters())
    views = torch.rand(2, 2, 1, 64, 64)
    with torch.no_grad():
        expected = model(views[:, 0], views[:, 1])["corr"]
    torch.testing.assert_close(guide(views), expected)
    # Views of another size are resized to the pretraining's; a coarser grid is pooled.
    small = CorrespondenceGuide.from_run(pretrain_run, (2, 2))
    big = F.interpolate(views.flatten(0, 1), size=128, mode="bilinear").view(2, 2, 1, 128, 128)
    assert small(big).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="does not pool"):
        CorrespondenceGuide.from_run(pretrain_run, (3, 3))


def test_classifier_starts_from_the_pretrained_encoder(pretrain_run, tmp_path):
    cfg = load_config(
        None,
        [f"model.init_from={pretrain_run}", "data.image_size=64", "model.min_pretrain_gain=null"]
        + [f"model.{k}={v}" for k, v in TINY_VIT.items()],
        cls=FinetuneConfig,
    )
    model = build_classifier(cfg)
    state = encoder_state_dict(pretrain_run / "ckpt" / "best.pt")
    mine = model.encoder.state_dict()
    assert set(state) == set(mine) and all(torch.equal(state[k], mine[k]) for k in state)
    scratch = build_classifier(replace(cfg, model=replace(cfg.model, init_from=None)))
    assert not torch.equal(scratch.encoder.vit.pos_embed, mine["vit.pos_embed"])
    wrong = replace(cfg, model=replace(cfg.model, width=64, mlp_dim=128))
    with pytest.raises(ValueError, match=r"differs from the pretraining's: width 64 \(pretr"):
        build_classifier(wrong)
    # Sizes left out (null) are the pretraining's: the YAML need not repeat them.
    bare = load_config(
        None,
        [f"model.init_from={pretrain_run}", "data.image_size=64", "model.min_pretrain_gain=null"],
        cls=FinetuneConfig,
    )
    inherited = build_classifier(bare).encoder.state_dict()
    assert all(torch.equal(state[k], inherited[k]) for k in state)
    with pytest.raises(FileNotFoundError, match="run `xmatch pretrain` first"):
        build_classifier(replace(cfg, model=replace(cfg.model, init_from=str(tmp_path))))


def test_classifier_loads_a_local_timm_checkpoint(tmp_path):
    import timm

    source = timm.create_model(
        "vit_small_patch16_224", pretrained=False, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2
    )
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    cfg = load_config(
        None,
        [f"model.pretrained_file={tmp_path / 'vit.pth'}", "data.image_size=64"]
        + [f"model.{k}={v}" for k, v in TINY_VIT.items()],
        cls=FinetuneConfig,
    )
    vit = build_classifier(cfg).encoder.vit
    want = source.state_dict()
    for key in ("blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "cls_token"):
        assert torch.equal(vit.state_dict()[key], want[key])
    assert vit.pos_embed.shape[1] == 1 + 16  # resampled from 14 x 14 to 4 x 4 patches
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_classifier(replace(cfg, model=replace(cfg.model, pretrained_file="/no/file")))
