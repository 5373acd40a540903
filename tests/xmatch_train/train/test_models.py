"""Every registry entry on tiny inputs; RoPE; backbones and local weight files; ViT-S reuse."""

from __future__ import annotations

from dataclasses import replace

import pytest
import timm
import torch
from safetensors.torch import save_file

from xmatch_train.models import (
    MODELS,
    ModelConfig,
    MultiViewViT,
    build_model,
    correspondence_loss,
    encoder_state_dict,
    load_timm_weights,
)
from xmatch_train.models.backbone import TimmBackbone
from xmatch_train.models.rope import GridRope, apply_rope

TINY = ModelConfig(backbone="convstem", width=32, depth=2, heads=2, mlp_dim=64, img_size=64)


def tiny(name: str, head: str = "cosine"):
    torch.manual_seed(0)
    return build_model(replace(TINY, name=name, head=head, grid=4))


@pytest.mark.parametrize("head", ["cosine", "prior"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_variant_shapes_range_gradients_and_masking(name, head):
    model = tiny(name, head)
    v0, v1 = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    out = model(v0, v1)
    corr = out["corr"]
    assert corr.shape == (2, 16, 16) and out["desc0"].shape == out["desc1"].shape == (2, 16, 32)
    assert torch.isfinite(corr).all() and corr.min() >= 0 and corr.max() <= 1 + 1e-6
    corr.retain_grad()
    target = torch.rand(2, 16, 16)
    mask = torch.rand(2, 16, 16) > 0.7
    loss = correspondence_loss(corr, target, mask)
    expect = ((corr - target) ** 2)[mask].mean()
    torch.testing.assert_close(loss, expect)
    loss.backward()
    assert (corr.grad[~mask] == 0).all() and (corr.grad[mask] != 0).any()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_views_talk_to_each_other_except_in_the_cnn_baseline(name):
    model = tiny(name).eval()
    v0 = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a = model(v0, torch.rand(1, 1, 64, 64))["desc0"]
        b = model(v0, torch.rand(1, 1, 64, 64))["desc0"]
    assert torch.allclose(a, b) == (name == "cnn")


def test_masked_loss_with_empty_mask_is_zero_and_plain_mse_otherwise():
    p, t = torch.rand(1, 4, 4, requires_grad=True), torch.rand(1, 4, 4)
    assert correspondence_loss(p, t, torch.zeros(1, 4, 4, dtype=torch.bool)).item() == 0
    torch.testing.assert_close(correspondence_loss(p, t), ((p - t) ** 2).mean())


def test_timm_hub_weights_fail_in_one_line_when_offline(monkeypatch):
    """model.pretrained=timm asks timm's hub; offline (forced here, nothing is downloaded) the
    error names the model and the local-file alternative."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read per call
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-xmatch-test")
    cfg = replace(TINY, name="cnn", backbone="resnet18", backbone_index=2, pretrained="timm")
    with pytest.raises(ValueError, match="could not get ImageNet weights for 'resnet18'") as e:
        build_model(cfg)
    assert "model.pretrained_file" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="model.pretrained must be null or 'timm'"):
        build_model(replace(cfg, pretrained="imagenet"))


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="available"):
        build_model(replace(TINY, name="nope"))


def test_rope_depends_on_relative_position_only():
    torch.manual_seed(0)
    hd, grid = 16, (8, 8)
    emb = GridRope(hd)(grid)
    q, k = torch.randn(hd), torch.randn(hd)
    qr = apply_rope(q.expand(1, 1, 64, hd).contiguous(), emb)[0, 0]  # q at every position
    kr = apply_rope(k.expand(1, 1, 64, hd).contiguous(), emb)[0, 0]

    def logit(p, pk):
        return torch.dot(qr[p[0] * 8 + p[1]], kr[pk[0] * 8 + pk[1]])

    for (p, pk), d in [
        (((1, 2), (3, 0)), (2, 3)),
        (((0, 0), (5, 5)), (1, 2)),
        (((4, 1), (0, 6)), (3, -1)),
    ]:
        shifted = logit((p[0] + d[0], p[1] + d[1]), (pk[0] + d[0], pk[1] + d[1]))
        torch.testing.assert_close(logit(p, pk), shifted, rtol=1e-5, atol=1e-5)
    # ... and it does depend on the offset, along rows and along columns
    assert not torch.isclose(logit((0, 0), (0, 1)), logit((0, 0), (0, 2)))
    assert not torch.isclose(logit((0, 0), (1, 0)), logit((0, 0), (2, 0)))


def test_timm_backbones_give_stride_16_tokens():
    x = torch.rand(1, 1, 256, 256)
    r50 = TimmBackbone("resnet50", 3).eval()
    with torch.no_grad():
        assert r50(x).shape == (1, 1024, 16, 16) and r50.stride == 16
    r18 = TimmBackbone("resnet18", 3)
    assert (r18.channels, r18.stride) == (256, 16)


def test_backbone_weights_come_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    reference = timm.create_model("resnet18")  # RGB ImageNet-shaped weights
    path = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(path))
    backbone = TimmBackbone("resnet18", 3, in_chans=1, pretrained_file=path)
    assert str(backbone.loaded_weights) == f"{path} (75 of 75 tensors)"  # layer4, fc cut off
    ours = dict(backbone.body.named_parameters())
    torch.testing.assert_close(ours["layer2.0.conv1.weight"], reference.layer2[0].conv1.weight)
    torch.testing.assert_close(ours["conv1.weight"], reference.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        TimmBackbone("resnet18", 3, pretrained_file=tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model(replace(TINY, name="vit_s", pretrained_file=str(tmp_path / "vit.pth")))


def test_vit_loads_a_timm_checkpoint_with_other_depth_grid_and_channels(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    src = VisionTransformer(
        img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=3, num_heads=2, num_classes=10
    )
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    vit = MultiViewViT(img_size=64, patch_size=8, width=32, depth=2, heads=2)
    report = load_timm_weights(vit.vit, path)
    assert len(report.keys) == report.total == 30  # 4 embeddings, 2 x 12 block tensors, norm
    torch.testing.assert_close(vit.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(
        vit.vit.patch_embed.proj.weight, src.patch_embed.proj.weight.sum(1, keepdim=True)
    )
    assert vit.vit.pos_embed.shape == (1, 1 + 64, 32)
    # a conv stem takes the file's blocks and positions; only the stem starts fresh
    conv = MultiViewViT(
        img_size=64, patch_size=8, width=32, depth=2, heads=2, stem="conv", pretrained_file=path
    )
    torch.testing.assert_close(conv.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert isinstance(conv.vit.patch_embed.proj, torch.nn.Sequential)
    assert len(conv.loaded_weights.keys) == 28 and conv.loaded_weights.total > 28  # stem fresh


def _timm_vit_file(path, depth):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(depth)
    vit = VisionTransformer(
        img_size=64, patch_size=16, embed_dim=32, depth=depth, num_heads=2, mlp_ratio=2.0
    )
    save_file(vit.state_dict(), str(path))
    return path


def test_a_weights_file_must_provide_half_of_the_tensors(tmp_path):
    """1 block of 2 in the file: 18 of the ViT's 30 tensors load and are reported; 1 block of
    4: 18 of 54, refused (the model would be mostly random init)."""
    path = _timm_vit_file(tmp_path / "vit1.safetensors", depth=1)
    vit = MultiViewViT(img_size=64, width=32, depth=2, heads=2, mlp_ratio=2.0, pretrained_file=path)
    assert str(vit.loaded_weights) == f"{path} (18 of 30 tensors)"
    with pytest.raises(ValueError, match="only 18 of the model's 54 tensors match") as err:
        MultiViewViT(img_size=64, width=32, depth=4, heads=2, mlp_ratio=2.0, pretrained_file=path)
    assert "not found: blocks.1.norm1.weight" in str(err.value)


def test_weights_files_of_other_models_are_refused_in_one_line(tmp_path):
    """A ResNet-18 state dict for the ViT, an xmatch checkpoint for a timm backbone: both used
    to train exactly like random initialisation."""
    save_file(timm.create_model("resnet18").state_dict(), str(tmp_path / "r18.safetensors"))
    with pytest.raises(ValueError, match="only 0 of the model's 30 tensors match") as err:
        build_model(replace(TINY, name="vit_s", pretrained_file=str(tmp_path / "r18.safetensors")))
    message = str(err.value)
    assert "not found: cls_token, pos_embed" in message and "the file holds bn1." in message
    assert "\n" not in message
    model = build_model(replace(TINY, name="cnn", backbone="resnet18", backbone_index=3))
    torch.save({"model": model.state_dict(), "step": 3}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="only 0 of the model's 75 tensors") as err:
        TimmBackbone("resnet18", 3, pretrained_file=tmp_path / "last.pt")
    assert "encoder.backbone.body.conv1.weight" in str(err.value)
    assert "an xmatch checkpoint" in str(err.value)


def test_vit_s_pretraining_weights_load_into_the_classifier_encoder():
    model = tiny("vit_s").eval()
    encoder = MultiViewViT(
        img_size=64, patch_size=16, width=32, depth=2, heads=2, mlp_ratio=2.0
    ).eval()
    encoder.load_state_dict(encoder_state_dict(model.state_dict()), strict=True)
    views = [torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)]
    with torch.no_grad():
        tokens = encoder(views)
        ref = model.encoder.vit(views)
    assert tokens.shape == (2, 1 + 2 * 16, 32)
    torch.testing.assert_close(tokens, ref)
    # per-layer additive attention bias reaches the blocks (the classifier's guidance hook)
    bias = torch.zeros(2, 1, 33, 33)
    bias[:, :, 1:17, 17:] = -1e4  # view 0 may not look at view 1
    with torch.no_grad():
        guided = encoder(views, [bias, None])
    assert not torch.allclose(guided, tokens)


def test_default_vit_s_is_the_papers_size():
    vit = MultiViewViT()
    assert (len(vit.blocks), vit.blocks[0].attn.num_heads, vit.width, vit.grid) == (
        6,
        4,
        384,
        (16, 16),
    )
