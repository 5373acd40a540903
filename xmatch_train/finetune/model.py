"""The fracture classifier: ViT-S with single, late or early fusion and attention guidance.

Fusion modes (the paper's Table 3):
    ``single``  one view (view 0 of the pair) through the encoder, class token -> logit;
    ``late``    each view alone through the same encoder (as a single-view model), the two
                logits averaged per study;
    ``early``   the patch tokens of both views concatenated, each with its own view embedding,
                with one class token (`xmatch_train.models.MultiViewViT`).

Attention guidance (section 3.4, early fusion only): with the N patch tokens of views A and B
after the class token, the pre-softmax attention logits of layer l get ``alpha_l * C`` added in
the A-to-B block (queries of A, keys of B) and ``alpha_l * C^T`` in the B-to-A block; the class
token's row and column and the A-A and B-B blocks are untouched. C (B, N, N) is the predicted
correspondence of a frozen pretrained model (`guidance.CorrespondenceGuide`); one learnable
alpha per layer. (Only the class token of the last layer is read and its row is unbiased, so
the last layer's alpha has no effect on the output and gets no gradient.) The bias is shaped
(B, 1, T, T), T = 1 + 2N, so it broadcasts over heads (a (B, T, T) mask silently broadcasts
wrongly against (B, heads, T, T) scores when B == heads), and it is cast to the query dtype
(autocast's dtype under AMP). A float mask rules
out the flash kernel; with T = 513 at 256 px the bias costs B x T^2 values per layer.
"""

from __future__ import annotations

import torch
from torch import nn

from xmatch_train.models.vit import MultiViewViT

FUSIONS = ("single", "late", "early")


def guidance_bias(corr: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """The unscaled attention bias of a correspondence matrix.

    Args:
        corr: (B, N, N) float, row = patch of view A, column = patch of view B.
        prefix: tokens before the patches (the class token).

    Returns:
        (B, 1, T, T) float32 with T = prefix + 2N: C in the A->B block
        ``[prefix:prefix+N, prefix+N:]``, C^T in the B->A block, zeros elsewhere.
    """
    b, n, m = corr.shape
    if n != m:
        raise ValueError(f"correspondence must be square (N, N), got {tuple(corr.shape)}")
    t = prefix + 2 * n
    bias = corr.new_zeros((b, 1, t, t), dtype=torch.float32)
    a, c = slice(prefix, prefix + n), slice(prefix + n, t)
    bias[:, 0, a, c] = corr.float()
    bias[:, 0, c, a] = corr.float().transpose(1, 2)
    return bias


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype queries have in attention: autocast's when it is on, else the input's."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


class FractureClassifier(nn.Module):
    """Binary study classifier on two views.

    Args:
        encoder: the ViT (`MultiViewViT`, max_views >= 2 for early fusion).
        fusion: ``single``, ``late`` or ``early``.
        guidance: add the correspondence bias (early fusion only).
        alpha_init: initial value of every layer's alpha.
        dropout: dropout before the linear head.
        input_mean, input_std: images in [0, 1] are normalised as (x - mean) / std (the
            correspondence pretraining's values).
    """

    def __init__(
        self,
        encoder: MultiViewViT,
        fusion: str = "early",
        guidance: bool = False,
        alpha_init: float = 1.0,
        dropout: float = 0.0,
        input_mean: float = 0.45,
        input_std: float = 0.225,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
        if guidance and fusion != "early":
            raise ValueError("attention guidance needs early fusion (both views in one sequence)")
        self.encoder, self.fusion, self.guided = encoder, fusion, guidance
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.width, 1))
        depth = len(encoder.blocks)
        self.alpha = nn.Parameter(torch.full((depth,), float(alpha_init))) if guidance else None
        self.input_mean, self.input_std = float(input_mean), float(input_std)

    @property
    def n_patches(self) -> int:
        """Patch tokens per view (N)."""
        return self.encoder.n_patches

    def _logit(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens[:, 0]).squeeze(-1)

    def layer_biases(self, corr: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
        """Per layer, ``alpha_l * guidance_bias(corr)`` in `dtype`, (B, 1, T, T)."""
        base = guidance_bias(corr)
        return [(a * base).to(dtype) for a in self.alpha]

    def forward(self, views: torch.Tensor, corr: torch.Tensor | None = None) -> torch.Tensor:
        """Study logits.

        Args:
            views: (B, 2, 1, H, W) images in [0, 1] (view A, view B).
            corr: (B, N, N) correspondence of view A to view B (needed with guidance).

        Returns:
            (B,) logits (sigmoid -> probability of abnormal).
        """
        x = (views - self.input_mean) / self.input_std
        a, b = x[:, 0], x[:, 1]
        if self.fusion == "single":
            return self._logit(self.encoder([a]))
        if self.fusion == "late":
            both = self._logit(self.encoder([torch.cat([a, b])]))
            return both.view(2, -1).mean(dim=0)
        bias = None
        if self.guided:
            if corr is None:
                raise ValueError("a guided classifier needs the correspondence matrix")
            n = self.n_patches
            if corr.shape[-2:] != (n, n):
                raise ValueError(
                    f"correspondence {tuple(corr.shape)} does not match {n} patches per view"
                )
            bias = self.layer_biases(corr, _compute_dtype(x))
        return self._logit(self.encoder([a, b], attn_bias=bias))
