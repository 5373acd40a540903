"""2-D rotary position embedding (RoPE) on one view's own patch grid (timm's implementation).

Each view gets the embedding of its own (rows, cols) grid, so positions in view B are not
offsets of positions in view A. For queries and keys rotated by the embedding of grid positions
p and p', the attention logit depends on p - p' only (the relative-position property).
"""

from __future__ import annotations

import torch
from timm.layers import RotaryEmbeddingCat, apply_rot_embed_cat
from torch import nn


class GridRope(nn.Module):
    """Axial 2-D RoPE for attention heads of size `head_dim` (a multiple of 4).

    Args:
        head_dim: per-head channels; half rotate with the row index, half with the column.
        temperature: wavelength base; the fastest band turns 1 radian per patch.
    """

    def __init__(self, head_dim: int, temperature: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim}")
        self.rope = RotaryEmbeddingCat(dim=head_dim, in_pixels=False, temperature=temperature)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        """The (rows * cols, 2 * head_dim) sin/cos embedding of a row-major grid, float32."""
        return self.rope.get_embed(list(grid))


def apply_rope(x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
    """Rotate (B, heads, N, head_dim) queries or keys by the (N, 2 * head_dim) embedding."""
    if emb is None:
        return x
    return apply_rot_embed_cat(x, emb.to(x.device))
