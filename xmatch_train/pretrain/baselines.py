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

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig

BASELINES = ("zero", "mean")
TRAIN_MEAN_FILE = "train_mean.npz"


def mean_matrix(batches: Iterable[dict]) -> tuple[np.ndarray, int]:
    """(N, N) float32 mean of ``corr_0to1`` over raw (un-augmented) batches, and the pairs."""
    total, n = None, 0
    for batch in batches:
        c = torch.as_tensor(batch["corr_0to1"]).double()  # (B, N, N)
        total = c.sum(0) if total is None else total + c.sum(0)
        n += c.shape[0]
    if total is None:
        raise ValueError("no training pairs to average (empty training split?)")
    return (total / n).float().numpy(), n


def save_train_mean(run_dir: Path, mean: np.ndarray, pairs: int, definition: str) -> Path:
    """Write ``run_dir/train_mean.npz``."""
    path = Path(run_dir) / TRAIN_MEAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mean=mean.astype(np.float32), pairs=pairs, definition=definition)
    return path


def load_train_mean(run_dir: Path) -> tuple[np.ndarray, str]:
    """(mean (N, N) float32, ground-truth definition) saved by a run.

    Raises:
        FileNotFoundError: the run has no ``train_mean.npz`` (written by older versions).
    """
    path = Path(run_dir) / TRAIN_MEAN_FILE
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
