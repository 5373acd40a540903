"""Scores over the annotated entries only (the paper's Table 2): precision and recall at the
threshold (0.2), AP; beside the trivial baselines on the same entries (chance: AP = the
positive fraction; the training mean matrix when the run has one)."""

from __future__ import annotations

import numpy as np
import torch

from xmatch_train.corr_finetune.data import PairSet
from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig


@torch.no_grad()
def predict_pairs(
    model: torch.nn.Module, pairs: PairSet, device: torch.device, batch_size: int = 16
) -> np.ndarray:
    """(P, N, N) float32 predicted C of every pair (model in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(pairs), batch_size):
        v0 = pairs.view0[s : s + batch_size].to(device)  # (b, 1, S, S)
        v1 = pairs.view1[s : s + batch_size].to(device)
        out.append(model(v0, v1)["corr"].float().cpu().numpy())  # (b, N, N)
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)


def score_entries(
    scores: np.ndarray, pairs: PairSet, cfg: MetricConfig = MetricConfig(extra_thresholds=())
) -> dict[str, float]:
    """Metrics of `scores` over the annotated entries of `pairs`.

    Args:
        scores: (P, N, N) predicted C, or (N, N) one matrix for every pair (a baseline).

    Returns:
        ``precision``, ``recall``, ``ap``, ``mse``, ``positive_fraction``, ``pairs`` and
        ``entries`` (annotated entries scored; an entry annotated twice counts twice).
    """
    metrics = CorrespondenceMetrics(cfg)
    n = 0
    for k, e in enumerate(pairs.entries):
        matrix = scores if scores.ndim == 2 else scores[k]
        metrics.update(matrix[e.a, e.b], e.label)  # (E,) each
        n += len(e)
    out = metrics.compute()
    out["pairs"], out["entries"] = len(pairs), n
    return out


def chance_scores(pairs: PairSet) -> dict[str, float]:
    """The chance baseline: every entry scored the same, AP = precision = the positive
    fraction, recall 1 (every entry predicted positive)."""
    frac = pairs.positive_fraction()
    return dict(precision=frac, recall=1.0, ap=frac, positive_fraction=frac)
