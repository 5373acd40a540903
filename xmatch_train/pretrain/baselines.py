"""The no-image predictors every correspondence model is measured against.

* ``zero``: C_hat = 0 everywhere (its MSE is the mean of C^2; its AP the positive fraction).
* ``mean``: C_hat = the training split's mean matrix for every pair, whatever the images:
  with canonical view angles (AP/lateral) it scores well above chance, so a model that does
  not beat it has learnt nothing from the images.

The mean is computed once per run from its training volumes and saved with the run
(``train_mean.npz``: the (N, N) matrix, the number of pairs and the store's ground-truth
definition), so `xmatch eval` can score it on any store without the training store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from xmatch_train.data.store import damaged_samples
from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig
from xmatch_train.train.rundir import RunDir

BASELINES = ("zero", "mean")


def mean_matrix(batches: Iterable[dict], stores: Sequence[str] = ()) -> tuple[np.ndarray, int]:
    """(N, N) float32 mean of ``corr_0to1`` over raw (un-augmented) batches, and the pairs.

    Raises:
        StoreError: a sample's corr is not finite (names it; `stores`: paths by store number).
    """
    total, n = None, 0
    for batch in batches:
        c = torch.as_tensor(batch["corr_0to1"]).double()  # (B, N, N)
        bad = ~torch.isfinite(c).flatten(1).all(1)
        if bool(bad.any()):
            info = torch.as_tensor(batch["info"])[bad]
            raise damaged_samples(stores, info[:, 3].tolist(), info[:, 4].tolist(), "corr")
        total = c.sum(0) if total is None else total + c.sum(0)
        n += c.shape[0]
    if total is None:
        raise ValueError("no training pairs to average (empty training split?)")
    return (total / n).float().numpy(), n


def save_train_mean(run_dir: Path, mean: np.ndarray, pairs: int, definition: str) -> Path:
    """Write ``run_dir/train_mean.npz``."""
    path = RunDir(run_dir).train_mean
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mean=mean.astype(np.float32), pairs=pairs, definition=definition)
    return path


def load_train_mean(run_dir: Path) -> tuple[np.ndarray, str]:
    """(mean (N, N) float32, ground-truth definition) saved by a run.

    Raises:
        FileNotFoundError: the run has no ``train_mean.npz`` (written by older versions).
    """
    path = RunDir(run_dir).train_mean
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; the run predates the mean-matrix baseline (retrain it)"
        )
    with np.load(path) as f:
        return f["mean"], str(f["definition"])


class BaselineMetrics:
    """Metrics of the no-image predictors on the targets of the batches a model is scored on.

    Args:
        mean: (N, N) training mean matrix.
        cfg: thresholds (those of the model's metrics).
    """

    def __init__(self, mean: np.ndarray | torch.Tensor, cfg: MetricConfig = MetricConfig()):
        self.mean = torch.as_tensor(mean).float()
        self.metrics = {name: CorrespondenceMetrics(cfg) for name in BASELINES}

    def update(self, target: torch.Tensor) -> None:
        """Add a batch of ground truth (B, N, N)."""
        target = target.float().cpu()
        if target.shape[1:] != self.mean.shape:
            raise ValueError(
                f"the training mean is {tuple(self.mean.shape)}, the pairs' corr "
                f"{tuple(target.shape[1:])}: another patch grid than the run trained on"
            )
        self.metrics["zero"].update(torch.zeros_like(target), target)
        self.metrics["mean"].update(self.mean.expand_as(target), target)

    def compute(self) -> dict[str, dict]:
        """{"zero": metrics, "mean": metrics}."""
        return {name: m.compute() for name, m in self.metrics.items()}


def validation_gain(run_dir: Path) -> tuple[float, float] | None:
    """(best validation AP, the mean-matrix AP on the same pairs) of a pretraining run, from
    its ``log.jsonl``; None when the log has no validation with the baseline."""
    from xmatch_train.train.logger import read_log

    path = RunDir(run_dir).log
    vals = [
        r
        for r in (read_log(path) if path.is_file() else [])
        if r.get("split") == "val" and r.get("mean_ap") is not None and r.get("ap") is not None
    ]
    if not vals:
        return None
    best = max(vals, key=lambda r: r["ap"])
    return float(best["ap"]), float(best["mean_ap"])


def check_beats_baseline(run_dir: Path, min_gain: float | None) -> None:
    """Refuse a pretraining whose best validation AP is not `min_gain` above its mean-matrix
    baseline: its features and predicted C would carry nothing the images told it.

    Raises:
        ValueError: naming the run, both APs and the option that lowers the bar.
    """
    if min_gain is None:
        return
    found = validation_gain(run_dir)
    hint = "(model.min_pretrain_gain=null skips this check)"
    if found is None:
        raise ValueError(
            f"{run_dir}: no validation against the mean-matrix baseline in its log.jsonl "
            f"(a run of an older version, or without a validation split); retrain it {hint}"
        )
    ap, mean_ap = found
    if ap - mean_ap < min_gain:
        raise ValueError(
            f"{run_dir}: its best validation AP {ap:.3f} does not beat the no-image "
            f"mean-matrix baseline {mean_ap:.3f} by {min_gain:g}: it learnt nothing usable "
            f"from the images; train it longer or on more volumes {hint}"
        )
