"""Correspondence head and losses.

The head L2-normalises the token descriptors of both views and squares their cosine
similarity, so the predicted matrix lies in [0, 1] like the ground truth C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def correspondence_matrix(desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
    """Squared cosine similarity of every token pair, computed in float32.

    Args:
        desc0: (B, N0, D) descriptors of view 0.
        desc1: (B, N1, D) descriptors of view 1.

    Returns:
        (B, N0, N1) in [0, 1]; entry [b, a, c] relates patch a of view 0 to patch c of view 1.
    """
    d0 = F.normalize(desc0.float(), dim=-1)
    d1 = F.normalize(desc1.float(), dim=-1)
    return torch.einsum("bnd,bmd->bnm", d0, d1).square()


def correspondence_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: float = 1.0,
) -> torch.Tensor:
    """Mean squared error, over the entries where `mask` is true when a mask is given; entries
    with C > 0.05 weigh `pos_weight` (1: the paper's plain MSE).

    Args:
        pred: (B, N0, N1) predicted matrix.
        target: (B, N0, N1) ground truth.
        mask: optional (B, N0, N1) bool (or 0/1) of annotated entries, e.g. the few labelled
            correspondences of a real pair; masked-out entries get no gradient.

    Returns:
        Scalar loss (0 when the mask selects nothing).
    """
    err = (pred.float() - target.float()).square()
    if pos_weight != 1.0:
        err = err * torch.where(target > 0.05, pos_weight, 1.0)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


class PriorMixtureHead(nn.Module):
    """Correspondence logits as a mixture of learned geometric priors plus image evidence.

    ``logit[a, b] = sum_k pi_k P_k[a, b] + g(d0_a) + g(d1_b) + s <W d0_a, d1_b> / sqrt(D)``,
    ``C_hat = sigmoid(logit)``. The K prior matrices P_k (N x N logits, initialised from the
    training store's mean matrix, `init_prior`) hold what the view sampling makes typical
    (AP/lateral row bands, mirrored PA, ...); the mixture weights pi (softmax over K) come from
    both views' pooled tokens, so the pair chooses its geometry from the images; g gates each
    patch (tissue or air) and the bilinear term, zero at the start, adds patch-to-patch
    evidence. At initialisation the head predicts the training mean: training starts on the
    no-image baseline and every gain over it is learnt from the images.

    Args:
        width: token width D.
        n_patches: N, tokens per view.
        components: K prior matrices.
    """

    def __init__(self, width: int, n_patches: int, components: int = 16):
        super().__init__()
        self.prior = nn.Parameter(torch.full((components, n_patches, n_patches), -9.0))
        self.mix = nn.Sequential(nn.LayerNorm(2 * width), nn.Linear(2 * width, components))
        self.gate = nn.Linear(width, 1)
        self.key = nn.Linear(width, width, bias=False)
        self.scale = nn.Parameter(torch.zeros(()))
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    @torch.no_grad()
    def init_prior(self, mean: torch.Tensor, jitter: float = 0.1, seed: int = 0) -> None:
        """Set every P_k to logit(mean) (clipped to [1e-4, 1 - 1e-4]) plus seeded noise.

        Args:
            mean: (N, N) mean correspondence matrix of the training split.
            jitter: std of the noise that tells the components apart at the start.
        """
        g = torch.Generator().manual_seed(seed)
        base = torch.logit(mean.float().clamp(1e-4, 1 - 1e-4)).to(self.prior.device)
        noise = torch.randn(self.prior.shape, generator=g).to(self.prior.device) * jitter
        self.prior.copy_(base + noise)

    def forward(self, desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
        """(B, N, D) x 2 -> logits (B, N, N) float32."""
        d0, d1 = desc0.float(), desc1.float()
        pi = self.mix(torch.cat([d0.mean(1), d1.mean(1)], dim=-1)).softmax(-1)  # (B, K)
        prior = torch.einsum("bk,knm->bnm", pi, self.prior)
        gates = self.gate(d0) + self.gate(d1).transpose(1, 2)  # (B, N, 1) + (B, 1, N)
        sim = torch.einsum("bnd,bmd->bnm", self.key(d0), d1) / d0.shape[-1] ** 0.5
        return prior + gates + self.scale * sim


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy of logits against the soft targets C in [0, 1], over all entries;
    entries with C > 0.05 weigh `pos_weight` (the rare tissue pairs against the many zeros).

    Args:
        logits: (B, N0, N1); target: (B, N0, N1) in [0, 1].
    """
    target = target.float()
    err = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    if pos_weight != 1.0:
        err = err * torch.where(target > 0.05, pos_weight, 1.0)
    return err.mean()
