"""Run a correspondence model over a stream and score it (used in training and `xmatch eval`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch

from xmatch_train.data.batch import BatchTransform
from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig

if TYPE_CHECKING:  # a runtime import would be circular (the training loop imports us)
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
) -> dict:
    """Metrics of `model` on `batches` (see `xmatch_train.metrics`)."""
    metrics = CorrespondenceMetrics(cfg)
    for batch, pred in predict(model, batches, rt, transform, max_batches):
        metrics.update(pred, batch["corr_0to1"])
    return metrics.compute()
