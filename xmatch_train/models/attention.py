"""Attention modules between the tokens of two views: the rows of the paper's Table 1.

Every module maps ``(x0, x1, rope0, rope1)`` to updated ``(x0, x1)``:
    x0, x1: (B, N0, D), (B, N1, D) tokens of view 0 and view 1;
    rope0, rope1: (N0, 2 * head_dim), (N1, 2 * head_dim) RoPE embeddings of each view's grid.

Modules (``depth`` counts attention layers; message-passing modules alternate self and cross):
    ``cnn``            no attention (identity);
    ``superglue``      attentional GNN: message = attention(x, source), x += MLP([x, message]);
    ``loftr``          LoFTR encoder layers: linear attention, x += norm(MLP([x, norm(message)]));
    ``transformer_mp`` pre-norm transformer blocks (attention + MLP), alternating self / cross;
    ``transformer``    pre-norm transformer blocks over the concatenated tokens of both views
                       (joint self-attention, no message passing: the paper's best).
RoPE rotates queries and keys wherever both come from the same view (self-attention, and the
joint attention where each token keeps its own view's position); cross-attention between the
two views uses no positions, the per-view embeddings tell the views apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmatch_train.models.rope import apply_rope

Tokens = tuple[torch.Tensor, torch.Tensor]


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rope_q=None, rope_k=None, eps: float = 1e-6
) -> torch.Tensor:
    """LoFTR's linear attention with the elu + 1 feature map, O(N) in tokens.

    With RoPE the numerator uses rotated features and the normaliser the unrotated ones
    (RoFormer, eq. 19), which keeps the normaliser positive.

    Args:
        q: (B, H, N, d); k, v: (B, H, M, d).
        rope_q, rope_k: (N, 2d) and (M, 2d) RoPE embeddings, or None.

    Returns:
        (B, H, N, d).
    """
    q, k = F.elu(q) + 1, F.elu(k) + 1
    z = 1.0 / (torch.einsum("bhnd,bhd->bhn", q, k.sum(dim=2)) + eps)
    qr, kr = apply_rope(q, rope_q), apply_rope(k, rope_k)
    kv = torch.einsum("bhmd,bhme->bhde", kr, v)
    return torch.einsum("bhnd,bhde,bhn->bhne", qr, kv, z)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of `x` onto `source` (self-attention when source is x).

    Args:
        dim: token width D.
        heads: attention heads (D divisible by heads).
        linear: LoFTR linear attention instead of softmax attention.
        bias: biases of the q/k/v projections.
    """

    def __init__(self, dim: int, heads: int, linear: bool = False, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.linear = heads, linear
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        rope_x: torch.Tensor | None = None,
        rope_s: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, N, D) queries from x, keys/values from (B, M, D) source -> (B, N, D)."""
        q = self._split(self.q(x))
        k, v = (self._split(t) for t in self.kv(source).chunk(2, dim=-1))
        if self.linear:
            out = linear_attention(q, k, v, rope_x, rope_s)
        else:
            out = F.scaled_dot_product_attention(apply_rope(q, rope_x), apply_rope(k, rope_s), v)
        return self.out(out.transpose(1, 2).flatten(2))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear, (B, N, d_in) -> (B, N, d_out)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d_in) -> (B, N, d_out)."""
        return self.net(x)


class NoAttention(nn.Module):
    """The ``cnn`` row: tokens pass unchanged."""

    def __init__(self, *_, **__):
        super().__init__()

    def forward(self, x0, x1, rope0=None, rope1=None) -> Tokens:
        """(B, N0, D), (B, N1, D) tokens and (N, 2 * head_dim) RoPE -> updated (x0, x1)."""
        return x0, x1


def _kinds(depth: int) -> list[str]:
    return ["self" if i % 2 == 0 else "cross" for i in range(depth)]


class _MessagePassing(nn.Module):
    """Alternating self / cross layers; both views update from the same previous state."""

    kinds: list[str]
    layers: nn.ModuleList

    def forward(self, x0, x1, rope0=None, rope1=None) -> Tokens:
        """(B, N0, D), (B, N1, D) tokens and (N, 2 * head_dim) RoPE -> updated (x0, x1)."""
        for kind, layer in zip(self.kinds, self.layers, strict=True):
            if kind == "self":
                x0, x1 = layer(x0, x0, rope0, rope0), layer(x1, x1, rope1, rope1)
            else:
                x0, x1 = layer(x0, x1), layer(x1, x0)
        return x0, x1


class GNNLayer(nn.Module):
    """SuperGlue update: x + MLP([x, attention(x, source)]) with LayerNorm + GELU in the MLP."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim),
            nn.LayerNorm(2 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * dim, dim),
        )

    def forward(self, x, source, rope_x=None, rope_s=None):
        """(B, N, D) tokens attending to (B, M, D) `source` -> (B, N, D)."""
        message = self.attn(x, source, rope_x, rope_s)
        return x + self.mlp(torch.cat([x, message], dim=-1))


class SuperGlue(_MessagePassing):
    """SuperGlue's attentional GNN with `depth` alternating self / cross layers."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float = 0.0, **_):
        super().__init__()
        self.kinds = _kinds(depth)
        self.layers = nn.ModuleList(GNNLayer(dim, heads, dropout) for _ in range(depth))


class LoFTRLayer(nn.Module):
    """LoFTR encoder layer: linear attention, merge, norm, MLP([x, message]), norm, residual."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, linear=True, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, 2 * dim, bias=False),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(2 * dim, dim, bias=False),
        )
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x, source, rope_x=None, rope_s=None):
        """(B, N, D) tokens attending to (B, M, D) `source` -> (B, N, D)."""
        message = self.norm1(self.attn(x, source, rope_x, rope_s))
        return x + self.norm2(self.mlp(torch.cat([x, message], dim=-1)))


class LoFTR(_MessagePassing):
    """LoFTR's linear-attention transformer with `depth` alternating self / cross layers."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float = 0.0, **_):
        super().__init__()
        self.kinds = _kinds(depth)
        self.layers = nn.ModuleList(LoFTRLayer(dim, heads, dropout) for _ in range(depth))


class Block(nn.Module):
    """Pre-norm transformer block: x += attn(LN(x), LN(source)); x += MLP(LN(x)).

    Args:
        cross: a cross-attention block (its source gets its own LayerNorm).
    """

    def __init__(
        self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, cross: bool = False
    ):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_s = nn.LayerNorm(dim) if cross else None
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, dim, dropout)

    def forward(self, x, source, rope_x=None, rope_s=None):
        """(B, N, D) tokens attending to (B, M, D) `source` -> (B, N, D)."""
        q = self.norm_q(x)
        s = q if self.norm_s is None else self.norm_s(source)
        x = x + self.attn(q, s, rope_x, rope_s)
        return x + self.mlp(self.norm2(x))


class TransformerMP(_MessagePassing):
    """Standard transformer blocks with message passing: `depth` alternating self / cross."""

    def __init__(
        self, dim: int, depth: int, heads: int, mlp_dim: int = 1024, dropout: float = 0.0, **_
    ):
        super().__init__()
        self.kinds = _kinds(depth)
        self.layers = nn.ModuleList(
            Block(dim, heads, mlp_dim, dropout, cross=kind == "cross") for kind in self.kinds
        )


class JointTransformer(nn.Module):
    """Transformer over [x0; x1] (joint self-attention); each token keeps its own view's RoPE."""

    def __init__(
        self, dim: int, depth: int, heads: int, mlp_dim: int = 1024, dropout: float = 0.0, **_
    ):
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))

    def forward(self, x0, x1, rope0=None, rope1=None) -> Tokens:
        """(B, N0, D), (B, N1, D) tokens and (N, 2 * head_dim) RoPE -> updated (x0, x1)."""
        n0 = x0.shape[1]
        x = torch.cat([x0, x1], dim=1)
        rope = None if rope0 is None else torch.cat([rope0, rope1], dim=0)
        for layer in self.layers:
            x = layer(x, x, rope, rope)
        return x[:, :n0], x[:, n0:]


ATTENTION = {
    "cnn": NoAttention,
    "superglue": SuperGlue,
    "loftr": LoFTR,
    "transformer_mp": TransformerMP,
    "transformer": JointTransformer,
}
