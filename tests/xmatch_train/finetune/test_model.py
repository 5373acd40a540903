"""The classifier: where the guidance bias lands, alpha gradients, fusion modes, init."""

from __future__ import annotations

import pytest
import torch

from xmatch_train.finetune.model import FractureClassifier, guidance_bias
from xmatch_train.models import MultiViewViT

N = 4  # 32 px views, 16 px patches: a 2 x 2 grid


def tiny(fusion="early", guidance=False, alpha=1.0, heads=2, img=32):
    torch.manual_seed(0)
    vit = MultiViewViT(img_size=img, patch_size=16, width=32, depth=2, heads=heads, mlp_ratio=2)
    return FractureClassifier(vit, fusion, guidance, alpha_init=alpha)


def capture_attention(model, layer: int = 0) -> list[torch.Tensor]:
    """Post-softmax attention of one layer via timm's non-fused path (attn_drop's input)."""
    attn = model.encoder.blocks[layer].attn
    attn.fused_attn = False
    seen = []
    attn.attn_drop.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    return seen


def test_bias_blocks():
    corr = torch.arange(1, 1 + 2 * N * N, dtype=torch.float32).view(2, N, N)
    bias = guidance_bias(corr)
    assert bias.shape == (2, 1, 1 + 2 * N, 1 + 2 * N)
    torch.testing.assert_close(bias[:, 0, 1 : 1 + N, 1 + N :], corr)
    torch.testing.assert_close(bias[:, 0, 1 + N :, 1 : 1 + N], corr.transpose(1, 2))
    mask = torch.ones_like(bias, dtype=torch.bool)
    mask[:, :, 1 : 1 + N, 1 + N :] = False
    mask[:, :, 1 + N :, 1 : 1 + N] = False
    assert torch.all(bias[mask] == 0)  # class token row/column and self blocks untouched


def test_bias_lands_exactly_in_the_cross_view_logits():
    model = tiny(guidance=True, alpha=0.7).eval()
    views = torch.rand(3, 2, 1, 32, 32)
    corr = torch.rand(3, N, N)
    seen = capture_attention(model)
    model(views, corr)
    with torch.no_grad():
        model.alpha.zero_()
    model(views, corr)
    guided, plain = (p.log() for p in seen)  # (B, heads, T, T) log-probabilities
    delta = guided - plain
    # log softmax(a + b) - log softmax(a) = b - logsumexp shift per row: remove row means.
    expected = 0.7 * guidance_bias(corr).expand_as(delta)
    centre = lambda x: x - x.mean(dim=-1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(centre(delta), centre(expected), atol=1e-5, rtol=0)
    assert torch.all(delta[:, :, 0].abs() < 1e-6)  # the class token's row does not move
    assert centre(delta)[:, :, 1 : 1 + N, 1 + N :].abs().max() > 0.05  # a real change


def test_alpha_is_one_learnable_scalar_per_layer_with_gradients():
    torch.manual_seed(0)
    vit = MultiViewViT(img_size=32, patch_size=16, width=32, depth=3, heads=2, mlp_ratio=2)
    model = FractureClassifier(vit, "early", guidance=True, alpha_init=0.5)
    assert model.alpha.shape == (3,)
    views, corr = torch.rand(2, 2, 1, 32, 32), torch.rand(2, N, N)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(views, corr), torch.tensor([0.0, 1.0])
    )
    loss.backward()
    assert torch.all(model.alpha.grad[:-1] != 0)
    # The last layer's bias only moves patch tokens that nothing reads any more (the class
    # token's row is unbiased), so its alpha gets no gradient: a property of the design.
    assert model.alpha.grad[-1] == 0


def test_batch_equal_to_heads_is_not_mixed_up():
    """B == heads == 2 with a different C per study: the batch equals each study alone."""
    model = tiny(guidance=True, alpha=3.0, heads=2).eval()
    views, corr = torch.rand(2, 2, 1, 32, 32), torch.rand(2, N, N)
    corr[1] = 1 - corr[1]
    both = model(views, corr)
    alone = torch.cat([model(views[i : i + 1], corr[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(both, alone)


def test_fused_and_explicit_attention_agree_with_bias():
    model = tiny(guidance=True, alpha=2.0).eval()
    views, corr = torch.rand(2, 2, 1, 32, 32), torch.rand(2, N, N)
    fused = model(views, corr)
    for block in model.encoder.blocks:
        block.attn.fused_attn = False
    torch.testing.assert_close(model(views, corr), fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "fusion,guidance", [("single", False), ("late", False), ("early", False), ("early", True)]
)
def test_every_fusion_mode_trains(fusion, guidance, one_thread):
    model = tiny(fusion, guidance)
    views, corr = torch.rand(3, 2, 1, 32, 32), torch.rand(3, N, N)
    logits = model(views, corr if guidance else None)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.head[1].weight.grad.abs().sum() > 0
    if fusion == "single":  # view B is ignored
        other = views.clone()
        other[:, 1] = torch.rand_like(other[:, 1])
        torch.testing.assert_close(model(other), logits)
    if fusion == "late":  # the mean of two single-view logits, order-free
        torch.testing.assert_close(model(views.flip(1)), logits, atol=1e-6, rtol=1e-5)


def test_guidance_needs_early_fusion_and_a_matching_matrix():
    with pytest.raises(ValueError, match="needs early fusion"):
        tiny("late", guidance=True)
    model = tiny(guidance=True)
    with pytest.raises(ValueError, match="needs the correspondence"):
        model(torch.rand(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="does not match 4 patches"):
        model(torch.rand(1, 2, 1, 32, 32), torch.rand(1, 16, 16))


def test_guided_forward_under_bf16_autocast():
    model = tiny(guidance=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 2, 1, 32, 32), torch.rand(2, N, N))
    assert torch.isfinite(out.float()).all()


def test_conv_stem_keeps_the_token_grid_and_trains():
    from xmatch_train.models.vit import conv_stem

    stem = conv_stem(1, 32, 16)
    assert [m.stride for m in stem if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 4
    assert stem(torch.zeros(2, 1, 64, 48)).shape == (2, 32, 4, 3)
    with pytest.raises(ValueError, match="power-of-2"):
        conv_stem(1, 32, 12)
    torch.manual_seed(0)
    vit = MultiViewViT(img_size=32, patch_size=16, width=32, depth=2, heads=2, stem="conv")
    model = FractureClassifier(vit, "early", guidance=True)
    views, corr = torch.rand(3, 2, 1, 32, 32), torch.rand(3, N, N)
    assert model(views, corr).shape == (3,)
    model(views, corr).sum().backward()
    assert vit.vit.patch_embed.proj[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown ViT stem"):
        MultiViewViT(img_size=32, patch_size=16, width=32, depth=2, heads=2, stem="mlp")
