"""ViT-S over the patches of several views (early fusion), shared by pretraining and fine-tuning.

`MultiViewViT` wraps a timm ``vit_small_patch16_224``-family model (6 layers, 4 heads, width 384,
patch 16 by default, 256 x 256 single-channel inputs). Each view is patch-embedded with the
shared patch embedding and the learned absolute position embedding of its own grid, plus a
learned per-view embedding; the tokens of all views and one class token are concatenated and
run through the timm blocks one by one, so a caller can give every layer its own additive
attention bias (the fracture classifier's correspondence-guided attention).

The correspondence pretraining saves this module's ``state_dict`` under the ``encoder.`` prefix
of the model (see `xmatch_train.models.encoder_state_dict`); the classifier builds a
`MultiViewViT` with the same arguments and loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.models._manipulate import adapt_input_conv
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from xmatch_train.models.backbone import (
    LoadedWeights,
    check_weights_file,
    load_matching,
    read_weights,
)

STEMS = ("patch", "conv")

# ViT-S (the paper's encoder): the one home of its sizes. Correspondence pretraining
# (``model.name=vit_s``) and the fracture classifier both build it through `build_vit`.
VIT_S = dict(width=384, depth=6, heads=4, mlp_dim=1536, patch_size=16, stem="patch")


def conv_stem(in_chans: int, width: int, patch_size: int) -> nn.Sequential:
    """A convolutional patch embedding of stride `patch_size` (a power of 2): 3x3 convs of
    stride 2 with BatchNorm and ReLU, channels 24, 48, ... capped at `width`, the last conv
    giving `width` channels. Replaces ViT's single linear patch projection ("early
    convolutions", Xiao et al. 2021): the locality prior lets a small ViT learn from a few
    thousand images on CPU, where the linear projection sat at chance (measured on the
    synthetic fractures). (B, C, H, W) -> (B, width, H / patch, W / patch).
    """
    n = int(patch_size).bit_length() - 1
    if patch_size < 2 or 2**n != patch_size:
        raise ValueError(f"the conv stem needs a power-of-2 patch size, got {patch_size}")
    layers, c = [], in_chans
    for k in range(n - 1):
        out = min(width, 24 * 2**k)
        layers += [nn.Conv2d(c, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
        c = out
    layers.append(nn.Conv2d(c, width, 3, 2, 1))
    return nn.Sequential(*layers)


class MultiViewViT(nn.Module):
    """ViT encoder of V views with one shared class token.

    Args:
        img_size: input side in pixels.
        patch_size: patch side in pixels (the token grid is img_size / patch_size square).
        in_chans: image channels.
        width: token width (384 for ViT-S).
        depth: transformer blocks (6).
        heads: attention heads (4).
        mlp_ratio: MLP hidden width / width.
        max_views: number of learned view embeddings.
        drop_path: stochastic depth rate.
        pretrained_file: local timm ViT checkpoint to initialise from (see `load_timm_weights`).
        stem: ``patch`` (ViT's linear patch projection, the paper's) or ``conv`` (`conv_stem`).

    Attributes:
        loaded_weights: what `pretrained_file` provided to the timm ViT (`LoadedWeights`, the
            conv stem's replaced patch projection not counted; only with a file).
    """

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 16,
        in_chans: int = 1,
        width: int = 384,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        max_views: int = 2,
        drop_path: float = 0.0,
        pretrained_file: str | Path | None = None,
        stem: str = "patch",
    ):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown ViT stem {stem!r}; choose one of {STEMS}")
        self.vit = timm.create_model(
            "vit_small_patch16_224",
            pretrained=False,
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            drop_path_rate=drop_path,
        )
        self.view_embed = nn.Parameter(torch.zeros(max_views, width))
        nn.init.trunc_normal_(self.view_embed, std=0.02)
        self.width = width
        self.grid = tuple(self.vit.patch_embed.grid_size)
        if pretrained_file:  # before the stem swap: a timm file has a patch-conv stem
            self.loaded_weights = load_timm_weights(self.vit, pretrained_file)
        if stem == "conv":  # timm's PatchEmbed flattens whatever its proj returns
            self.vit.patch_embed.proj = conv_stem(in_chans, width, patch_size)
            if pretrained_file:
                self.loaded_weights = self.loaded_weights.within(self.vit)

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks (timm `Block`), in order."""
        return self.vit.blocks

    @property
    def n_patches(self) -> int:
        """Tokens per view."""
        return self.grid[0] * self.grid[1]

    def embed(self, x: torch.Tensor, view: int) -> torch.Tensor:
        """(B, C, H, W) image of view number `view` -> (B, N, width) tokens with positions."""
        t = self.vit.patch_embed(x)
        pos = self.vit.pos_embed[:, self.vit.num_prefix_tokens :]
        return t + pos + self.view_embed[view]

    def forward(
        self,
        views: Sequence[torch.Tensor],
        attn_bias: Sequence[torch.Tensor | None] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode the views jointly.

        Args:
            views: V tensors (B, C, H, W).
            attn_bias: None, one additive attention bias for every layer, or one per layer
                (None entries allowed); each broadcastable to (B, heads, T, T) with
                T = 1 + V * N, e.g. (B, 1, T, T), in the query dtype.

        Returns:
            (B, 1 + V * N, width) normed tokens: the class token, then view 0's N patch
            tokens (row-major), then view 1's, ...
        """
        b = views[0].shape[0]
        cls = (self.vit.cls_token + self.vit.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls] + [self.embed(v, i) for i, v in enumerate(views)], dim=1)
        if attn_bias is None or isinstance(attn_bias, torch.Tensor):
            attn_bias = [attn_bias] * len(self.vit.blocks)
        if len(attn_bias) != len(self.vit.blocks):
            raise ValueError(f"{len(attn_bias)} attention biases for {len(self.vit.blocks)} layers")
        for block, bias in zip(self.vit.blocks, attn_bias, strict=True):
            x = block(x, attn_mask=bias)
        return self.vit.norm(x)


def load_timm_weights(vit: nn.Module, path: str | Path) -> LoadedWeights:
    """Load a local timm ViT checkpoint into `vit`, adapting it to the model's shape.

    Position embeddings are resampled to the model's grid, the patch embedding to its patch
    size and input channels; blocks beyond the model's depth are dropped. Tensors are then
    matched by name and shape (`load_matching`).

    Args:
        vit: a timm `VisionTransformer`.
        path: .safetensors / .pth / .bin state dict of a timm ViT.

    Returns:
        What was loaded (``len(report.keys)`` of ``report.total`` tensors).

    Raises:
        PretrainedWeightsError: the file is unreadable or provides fewer than `MIN_MATCHED`
            of the ViT's tensors (another architecture, an xmatch checkpoint).
    """
    file = check_weights_file(path)
    state = read_weights(file)
    if any(k.startswith(("blocks.", "patch_embed.", "pos_embed")) for k in state):
        state = checkpoint_filter_fn(state, vit)  # only for ViT files: it assumes their keys
    key = "patch_embed.proj.weight"
    in_chans = vit.patch_embed.proj.weight.shape[1]
    if key in state and state[key].ndim == 4 and state[key].shape[1] != in_chans:
        state[key] = adapt_input_conv(in_chans, state[key])
    return load_matching(vit, state, file)


def build_vit(
    img_size: int,
    sizes: dict | None = None,
    drop_path: float = 0.0,
    pretrained_file: str | Path | None = None,
) -> MultiViewViT:
    """A single-channel `MultiViewViT` of two views: ViT-S (`VIT_S`) with the entries of
    `sizes` that are not None instead (keys of `VIT_S`: width, depth, heads, mlp_dim,
    patch_size, stem)."""
    unknown = set(sizes or {}) - set(VIT_S)
    if unknown:
        raise ValueError(f"unknown ViT size(s) {sorted(unknown)}; known: {sorted(VIT_S)}")
    s = VIT_S | {k: v for k, v in (sizes or {}).items() if v is not None}
    return MultiViewViT(
        img_size=img_size,
        patch_size=s["patch_size"],
        in_chans=1,
        width=s["width"],
        depth=s["depth"],
        heads=s["heads"],
        mlp_ratio=s["mlp_dim"] / s["width"],
        drop_path=drop_path,
        pretrained_file=pretrained_file,
        stem=s["stem"],
    )
