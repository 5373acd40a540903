"""Run a correspondence model over a stream and score it (used in training and `xmatch eval`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch

from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig

if TYPE_CHECKING:  # a runtime import would be circular (the training loop imports us)
    from xmatch_train.train.dist import Runtime


@torch.no_grad()
def predict(
    model: torch.nn.Module, batches: Iterable[dict], rt: Runtime, max_batches: int | None = None
) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yield (batch, predicted corr (B, N, N) float32 on CPU) in evaluation mode."""
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            v0 = batch["view0"].to(rt.device, non_blocking=True)
            v1 = batch["view1"].to(rt.device, non_blocking=True)
            with rt.autocast():
                pred = model(v0, v1)["corr"]
            yield batch, pred.float().cpu()
    finally:
        model.train(was_training)


def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict],
    rt: Runtime,
    cfg: MetricConfig = MetricConfig(),
    max_batches: int | None = None,
) -> dict:
    """Metrics of `model` on `batches` (see `xmatch_train.metrics`)."""
    metrics = CorrespondenceMetrics(cfg)
    for batch, pred in predict(model, batches, rt, max_batches):
        metrics.update(pred, batch["corr_0to1"])
    return metrics.compute()
