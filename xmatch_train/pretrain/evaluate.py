"""Run a correspondence model over a stream and score it, beside the no-image baselines
(used in training and `xmatch eval`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from xmatch_train.data.batch import BatchTransform
from xmatch_train.data.store import damaged_samples, name_samples
from xmatch_train.metrics import CorrespondenceMetrics, MetricConfig
from xmatch_train.pretrain.baselines import BaselineMetrics
from xmatch_train.train.dist import Runtime


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x).flatten(1).all(1)


def check_finite(batch: dict, pred: torch.Tensor, stores: Sequence[str] = ()) -> None:
    """Name the samples of a prepared batch whose inputs or predictions are not finite (they
    would fail later in scikit-learn as "Input contains NaN", naming nothing).

    Args:
        batch: a `BatchTransform` output; pred: its predicted corr.
        stores: the store paths, by store number (numbers only when empty).

    Raises:
        StoreError: views or corr of some samples are NaN / inf (a damaged store).
        ValueError: the model predicts non-finite values from sound inputs.
    """
    sound = _finite(batch["view0"]) & _finite(batch["view1"]) & _finite(batch["corr_0to1"])
    flags = torch.stack([sound, _finite(pred)]).cpu()  # one host sync per batch
    if bool(flags.all()):
        return
    store, index = batch["store"].cpu(), batch["index"].cpu()
    if not bool(flags[0].all()):
        bad = ~flags[0]
        raise damaged_samples(stores, store[bad].tolist(), index[bad].tolist(), "views or corr")
    bad = ~flags[1]
    raise ValueError(
        f"{name_samples(stores, store[bad].tolist(), index[bad].tolist())}: the model predicts "
        "non-finite values from finite inputs (non-finite weights in the checkpoint?)"
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    batches: Iterable[dict],
    rt: Runtime,
    transform: BatchTransform,
    max_batches: int | None = None,
    stores: Sequence[str] = (),
) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yield (prepared batch on the device, predicted corr (B, N, N) float32) in eval mode.

    Samples whose inputs or predictions are not finite stop it, named (`check_finite`; the
    store paths `stores` by store number).
    """
    was_training = model.training
    model.eval()
    try:
        for i, raw in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            batch = transform(raw, rt.device)
            with rt.autocast():
                pred = model(batch["view0"], batch["view1"])["corr"]
            check_finite(batch, pred, stores)
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
    stores: Sequence[str] = (),
) -> dict:
    """Metrics of `model` on `batches` (see `xmatch_train.metrics`).

    With `train_mean` (N, N), the no-image baselines are scored on the same pairs and added as
    ``mean_ap``, ``mean_mse``, ``zero_mse`` and ``ap_gain`` (= ap - mean_ap). `stores` (paths
    by store number) name the samples of non-finite inputs (`check_finite`).
    """
    metrics = CorrespondenceMetrics(cfg)
    base = BaselineMetrics(train_mean, cfg) if train_mean is not None else None
    for batch, pred in predict(model, batches, rt, transform, max_batches, stores):
        metrics.update(pred, batch["corr_0to1"])
        if base is not None:
            base.update(batch["corr_0to1"])
    out = metrics.compute()
    if base is not None:
        b = base.compute()
        out.update(mean_ap=b["mean"]["ap"], mean_mse=b["mean"]["mse"], zero_mse=b["zero"]["mse"])
        out["ap_gain"] = out["ap"] - out["mean_ap"]
    return out
