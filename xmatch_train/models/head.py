"""Correspondence head and losses.

The head L2-normalises the token descriptors of both views and squares their cosine
similarity, so the predicted matrix lies in [0, 1] like the ground truth C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error, over the entries where `mask` is true when a mask is given.

    Args:
        pred: (B, N0, N1) predicted matrix.
        target: (B, N0, N1) ground truth.
        mask: optional (B, N0, N1) bool (or 0/1) of annotated entries, e.g. the few labelled
            correspondences of a real pair; masked-out entries get no gradient.

    Returns:
        Scalar loss (0 when the mask selects nothing).
    """
    err = (pred.float() - target.float()).square()
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)
