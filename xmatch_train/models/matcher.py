"""The correspondence model: encoder of two views -> descriptors -> squared-cosine matrix."""

from __future__ import annotations

import torch
from torch import nn

from xmatch_train.models.head import correspondence_matrix
from xmatch_train.models.rope import GridRope
from xmatch_train.models.vit import MultiViewViT


class CNNAttentionEncoder(nn.Module):
    """CNN backbone -> 1x1 projection -> tokens + view embedding -> attention module.

    Args:
        backbone: module (B, 1, H, W) -> (B, C, H / s, W / s) with attributes `channels`, `stride`.
        attention: module (x0, x1, rope0, rope1) -> (x0, x1) (see `models.attention`).
        width: token width D.
        heads: attention heads (sets the RoPE head size D / heads).
        max_views: learned view embeddings.
    """

    def __init__(
        self, backbone: nn.Module, attention: nn.Module, width: int, heads: int, max_views: int = 2
    ):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Conv2d(backbone.channels, width, kernel_size=1)
        self.view_embed = nn.Parameter(torch.zeros(max_views, width))
        nn.init.trunc_normal_(self.view_embed, std=0.02)
        self.rope = GridRope(width // heads)
        self.attention = attention

    def forward(
        self, view0: torch.Tensor, view1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) x 2 -> tokens (B, N, D) x 2, N = (H / s) (W / s) row-major."""
        feats = self.proj(self.backbone(torch.cat([view0, view1], dim=0)))  # (2B, D, h, w)
        grid = tuple(feats.shape[-2:])
        tokens = feats.flatten(2).transpose(1, 2)  # (2B, N, D)
        t0, t1 = tokens.chunk(2, dim=0)
        t0, t1 = t0 + self.view_embed[0], t1 + self.view_embed[1]
        rope = self.rope(grid).to(t0.device)
        return self.attention(t0, t1, rope, rope)


class ViTPairEncoder(nn.Module):
    """`MultiViewViT` over two views; returns their patch tokens (class token dropped)."""

    def __init__(self, vit: MultiViewViT):
        super().__init__()
        self.vit = vit

    def forward(
        self, view0: torch.Tensor, view1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) x 2 -> tokens (B, N, D) x 2."""
        x = self.vit([view0, view1])
        n = self.vit.n_patches
        return x[:, 1 : 1 + n], x[:, 1 + n :]


class CorrespondenceModel(nn.Module):
    """Predicts the many-to-many patch correspondence matrix of two views.

    Args:
        encoder: (view0, view1) -> (tokens0, tokens1), (B, N, D) each.
        width: D.
        input_mean, input_std: the images in [0, 1] are normalised as (x - mean) / std.
        head: None for the paper's head (squared cosine of the descriptors), or a module
            (desc0, desc1) -> logits (B, N, N) such as `PriorMixtureHead`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        width: int,
        input_mean: float = 0.45,
        input_std: float = 0.225,
        head: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.final_proj = nn.Linear(width, width)
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        self.head = head

    def forward(self, view0: torch.Tensor, view1: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict C.

        Args:
            view0, view1: (B, 1, H, W) images in [0, 1].

        Returns:
            ``corr`` (B, N, N) float32 in [0, 1] (row = patch of view0, column = patch of
            view1, patches row-major), ``desc0`` and ``desc1`` (B, N, D) descriptors, and
            ``logits`` (B, N, N) when the head predicts logits (``corr = sigmoid(logits)``).
        """
        x0 = (view0 - self.input_mean) / self.input_std
        x1 = (view1 - self.input_mean) / self.input_std
        t0, t1 = self.encoder(x0, x1)
        d0, d1 = self.final_proj(t0), self.final_proj(t1)
        if self.head is None:
            return {"corr": correspondence_matrix(d0, d1), "desc0": d0, "desc1": d1}
        logits = self.head(d0, d1)
        return {"corr": torch.sigmoid(logits), "logits": logits, "desc0": d0, "desc1": d1}
