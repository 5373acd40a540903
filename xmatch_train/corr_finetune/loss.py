"""The loss over annotated entries only: every other entry of the (N, N) matrix gets no
gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xmatch_train.models import correspondence_loss

LOSSES = ("auto", "mse", "bce")


def loss_kind(setting: str, out: dict) -> str:
    """``bce`` or ``mse``: `setting` (``train.loss``), ``auto`` being the model's own (BCE
    when the head predicts logits, the prior head; MSE for the paper's cosine head)."""
    if setting not in LOSSES:
        raise ValueError(f"unknown train.loss {setting!r}; choose one of {', '.join(LOSSES)}")
    if setting == "auto":
        return "bce" if "logits" in out else "mse"
    if setting == "bce" and "logits" not in out:
        raise ValueError("train.loss=bce needs a head that predicts logits (model.head=prior)")
    return setting


def masked_loss(out: dict, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss over the annotated entries.

    Args:
        out: the model's output (``corr`` (B, N, N) in [0, 1]; ``logits`` (B, N, N) for BCE).
        target: (B, N, N) labels (1 positive, 0 negative) at the annotated entries.
        mask: (B, N, N) 1 at the annotated entries, 0 elsewhere.
        kind: ``bce`` (on the logits) or ``mse`` (on ``corr``).

    Returns:
        Scalar: sum over annotated entries / their count (0 when there are none).
    """
    m = mask.float()
    if kind == "bce":
        err = F.binary_cross_entropy_with_logits(
            out["logits"].float(), target.float(), reduction="none"
        )  # (B, N, N)
        return (err * m).sum() / m.sum().clamp_min(1.0)
    return correspondence_loss(out["corr"], target, mask=m)
