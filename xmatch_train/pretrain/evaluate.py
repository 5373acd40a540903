"""Run a correspondence model over a stream and score it, beside the no-image baselines
(used in training and `xmatch eval`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from xmatch_train.data.batch import BatchTransform
from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig
from xmatch_train.pretrain.baselines import BaselineMetrics
from xmatch_train.train.dist import Runtime


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    batches: Iterable[dict],
    rt: Runtime,
    transform: BatchTransform,
    max_batches: int | None = None,
) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yield (prepared batch on the device, predicted corr (B, N, N) float32) in eval mode."""
    was_training = model.training
    model.eval()
    try:
        for i, raw in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            batch = transform(raw, rt.device)
            with rt.autocast():
                pred = model(batch["view0"], batch["view1"])["corr"]
            yield batch, pred.float()
    finally:
        model.train(was_training)


def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict],
    rt: Runtime,
    transform: BatchTransform,
    cfg: MetricConfig = MetricConfig(),
    max_batches: int | None = None,
    train_mean: np.ndarray | None = None,
) -> dict:
    """Metrics of `model` on `batches` (see `xmatch_train.metrics`).

    With `train_mean` (N, N), the no-image baselines are scored on the same pairs and added as
    ``mean_ap``, ``mean_mse``, ``zero_mse`` and ``ap_gain`` (= ap - mean_ap).
    """
    metrics = CorrespondenceMetrics(cfg)
    base = BaselineMetrics(train_mean, cfg) if train_mean is not None else None
    for batch, pred in predict(model, batches, rt, transform, max_batches):
        metrics.update(pred, batch["corr_0to1"])
        if base is not None:
            base.update(batch["corr_0to1"])
    out = metrics.compute()
    if base is not None:
        b = base.compute()
        out.update(mean_ap=b["mean"]["ap"], mean_mse=b["mean"]["mse"], zero_mse=b["zero"]["mse"])
        out["ap_gain"] = out["ap"] - out["mean_ap"]
    return out
