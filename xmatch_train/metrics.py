"""The paper's metrics: correspondence (Table 1), accumulated over batches, and study-level
classification (Table 3, `classification_metrics`).

Correspondence:

* MSE over all matrix entries;
* precision and recall over all entries: ground truth positive where C > ``gt_threshold``
  (0.2), prediction positive where C_hat > ``pred_threshold`` (0.2); also at every threshold of
  ``extra_thresholds`` (default 0.5, used for both);
* average precision (scikit-learn `average_precision_score`) of the continuous predictions
  against the ground-truth positives, over all entries.

AP needs every score: up to ``exact_limit`` entries they are kept and scikit-learn sees them
as they are; beyond, scores are binned into 2^16 levels per label and scikit-learn is given the
bins with their counts as sample weights (AP of the scores rounded to 1/65535; the difference
is far below the reported precision, and memory stays constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import average_precision_score

BINS = 1 << 16


@dataclass(frozen=True)
class MetricConfig:
    """Thresholds of the metrics.

    Attributes:
        gt_threshold: ground truth positive where C > this.
        pred_threshold: prediction positive where C_hat > this.
        extra_thresholds: more thresholds reported as ``precision@t`` / ``recall@t`` /
            ``ap@t``, each used for both ground truth and prediction.
        exact_limit: entries kept exactly for AP before switching to binned scores.
    """

    gt_threshold: float = 0.2
    pred_threshold: float = 0.2
    extra_thresholds: tuple[float, ...] = (0.5,)
    exact_limit: int = 20_000_000


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


class CorrespondenceMetrics:
    """Accumulate predictions and targets; `compute` returns the metrics.

    Args:
        cfg: thresholds.
    """

    def __init__(self, cfg: MetricConfig = MetricConfig()):
        self.cfg = cfg
        self.settings = [(cfg.gt_threshold, cfg.pred_threshold)] + [
            (t, t) for t in cfg.extra_thresholds
        ]
        self.se = 0.0
        self.count = 0
        self.pairs = 0
        self.counts = np.zeros((len(self.settings), 3), dtype=np.int64)  # tp, fp, fn
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.hist: np.ndarray | None = None  # (settings, 2, BINS): negatives, positives

    def update(
        self,
        pred: torch.Tensor | np.ndarray,
        target: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Add a batch.

        Args:
            pred: (B, N, M) predictions in [0, 1].
            target: (B, N, M) ground truth in [0, 1].
            mask: optional (B, N, M) bool of the entries to score.
        """
        p = _numpy(pred).astype(np.float32).ravel()
        t = _numpy(target).astype(np.float32).ravel()
        if mask is not None:
            m = _numpy(mask).astype(bool).ravel()
            p, t = p[m], t[m]
        self.pairs += int(_numpy(pred).shape[0]) if np.ndim(pred) == 3 else 1
        self.se += float(np.sum((p.astype(np.float64) - t) ** 2))
        self.count += p.size
        for k, (tg, tp_) in enumerate(self.settings):
            gt, pr = t > tg, p > tp_
            self.counts[k] += [np.sum(gt & pr), np.sum(~gt & pr), np.sum(gt & ~pr)]
        if self.hist is None:
            self.scores.append(p)
            self.targets.append(t)
            if sum(s.size for s in self.scores) > self.cfg.exact_limit:
                self._to_histogram()
        else:
            self._add_histogram(p, t)

    def _to_histogram(self) -> None:
        self.hist = np.zeros((len(self.settings), 2, BINS), dtype=np.int64)
        for p, t in zip(self.scores, self.targets, strict=True):
            self._add_histogram(p, t)
        self.scores, self.targets = [], []

    def _add_histogram(self, p: np.ndarray, t: np.ndarray) -> None:
        b = np.clip(np.rint(p * (BINS - 1)), 0, BINS - 1).astype(np.int64)
        for k, (tg, _) in enumerate(self.settings):
            pos = t > tg
            self.hist[k, 1] += np.bincount(b[pos], minlength=BINS)
            self.hist[k, 0] += np.bincount(b[~pos], minlength=BINS)

    def _ap(self, k: int) -> float:
        tg = self.settings[k][0]
        if self.hist is None:
            if not self.scores:
                return math.nan
            p, t = np.concatenate(self.scores), np.concatenate(self.targets) > tg
            return float(average_precision_score(t, p)) if t.any() else math.nan
        neg, pos = self.hist[k]
        if pos.sum() == 0:
            return math.nan
        used = np.flatnonzero(neg + pos)
        score = np.concatenate([used, used]) / (BINS - 1)
        label = np.concatenate([np.zeros(used.size), np.ones(used.size)])
        weight = np.concatenate([neg[used], pos[used]]).astype(np.float64)
        keep = weight > 0
        return float(average_precision_score(label[keep], score[keep], sample_weight=weight[keep]))

    def compute(self) -> dict[str, float]:
        """``mse``, ``precision``, ``recall``, ``ap``, ``precision@t`` / ``recall@t`` / ``ap@t``
        for the extra thresholds, ``positive_fraction`` and ``pairs``; fractions in [0, 1]
        (NaN where undefined, e.g. precision with no predicted positive)."""
        out: dict[str, float] = {"mse": _ratio(self.se, self.count)}
        for k, (tg, _) in enumerate(self.settings):
            tp, fp, fn = (float(x) for x in self.counts[k])
            suffix = "" if k == 0 else f"@{tg:g}"
            out[f"precision{suffix}"] = _ratio(tp, tp + fp)
            out[f"recall{suffix}"] = _ratio(tp, tp + fn)
            out[f"ap{suffix}"] = self._ap(k)
        tp, _, fn = self.counts[0]
        out["positive_fraction"] = _ratio(float(tp + fn), self.count)
        out["pairs"] = self.pairs
        return out


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def classification_metrics(labels, probs, threshold: float = 0.5) -> dict[str, float]:
    """Study-level binary classification metrics (the paper's Table 3), with scikit-learn.

    Args:
        labels: (S,) 0/1 ground truth per study (1 = abnormal).
        probs: (S,) predicted probability of abnormal per study.
        threshold: a study is predicted abnormal when its probability is >= this.

    Returns:
        ``accuracy``, ``precision``, ``recall``, ``kappa`` (Cohen's), ``auc`` (ROC), fractions
        in [0, 1] (NaN where undefined: precision without predicted positives, AUC or kappa
        with one class only), and ``studies`` / ``positives`` counts.
    """
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"need as many labels as probabilities (> 0), got {y.size} and {p.size}")
    pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y)) == 2
    single = len(np.unique(np.r_[y, pred])) == 1  # kappa is 0/0 with one class everywhere
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=np.nan)),
        "recall": float(recall_score(y, pred, zero_division=np.nan)),
        "kappa": math.nan if single else float(cohen_kappa_score(y, pred)),
        "auc": float(roc_auc_score(y, p)) if both else math.nan,
        "studies": int(y.size),
        "positives": int(y.sum()),
    }


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney U with mid-ranks for ties) along the last axis.

    Args:
        labels: (S,) 0/1, both classes present.
        scores: (..., S) scores, higher = more likely positive.

    Returns:
        (...) AUC per row of `scores` (same values as scikit-learn's `roc_auc_score`).
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(np.asarray(scores, dtype=np.float64), axis=-1)
    return (ranks[..., labels].sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def paired_auc_bootstrap(
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of the seed-mean AUC difference of two rows on the same test studies.

    Each resample draws studies with replacement (stratified by label, so both classes stay
    present); in it, each row's AUC is computed for every seed and averaged over seeds, and
    the difference A - B is recorded. Resampling studies is what a new test set would change;
    the seeds' own spread is reported separately (mean +- std).

    Args:
        labels: (S,) 0/1 labels of the studies.
        probs_a, probs_b: (seeds_a, S) and (seeds_b, S) probabilities, studies in the same order.
        n_boot: resamples.
        seed: resampling seed.

    Returns:
        ``diff`` (observed difference of the seed-mean AUCs), ``low`` / ``high`` (2.5 / 97.5 %
        percentiles), ``p_le_0`` (fraction of resamples with A - B <= 0), ``n_boot``.
    """
    labels = np.asarray(labels).astype(int)
    a, b = np.atleast_2d(probs_a), np.atleast_2d(probs_b)
    observed = float(rank_auc(labels, a).mean() - rank_auc(labels, b).mean())
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        y = labels[idx]
        diffs[i] = rank_auc(y, a[:, idx]).mean() - rank_auc(y, b[:, idx]).mean()
    low, high = np.percentile(diffs, [2.5, 97.5])
    return dict(
        diff=observed,
        low=float(low),
        high=float(high),
        p_le_0=float(np.mean(diffs <= 0)),
        n_boot=int(n_boot),
    )
