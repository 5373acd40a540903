"""Correspondence pretraining as a `fit` task: view pairs streamed from stores, the loss on C,
validation AP beside the no-image baselines (`baselines`).

Run directory (see `xmatch_train.train.loop` for the files every task writes): also
``train_mean.npz``, the training split's mean matrix (the ``mean`` baseline; the ``prior``
head starts from it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import torch

from xmatch_train.config import PretrainConfig
from xmatch_train.data import (
    PairStream,
    StreamOptions,
    common_definition,
    load_split,
    make_loader,
    read_meta,
    sample_mask,
    save_split,
    split_volumes,
)
from xmatch_train.data.batch import BatchTransform
from xmatch_train.data.store import StoreError, StoreMeta, name_samples
from xmatch_train.models import build_model, correspondence_loss, count_parameters
from xmatch_train.models.backbone import loaded_weights
from xmatch_train.models.head import bce_loss
from xmatch_train.models.registry import check_config, resolve_sizes
from xmatch_train.pretrain.baselines import (
    load_train_mean,
    mean_matrix,
    save_train_mean,
)
from xmatch_train.pretrain.evaluate import evaluate
from xmatch_train.train import dist
from xmatch_train.train.loop import fit
from xmatch_train.train.rundir import RunDir

LOSSES = ("auto", "mse", "bce")


def volume_keys(metas: list[StoreMeta]) -> list[str]:
    """Keys of every CT with at least one written sample, over all stores."""
    return [m.volume_key(v) for m in metas for v in set(m.volume_id[m.volume_id >= 0].tolist())]


def make_stream(
    cfg: PretrainConfig, metas, keys, rt: dist.Runtime | None, train: bool
) -> PairStream:
    """The training stream (this rank's share) or the validation/test stream (one process)."""
    d = cfg.data
    options = StreamOptions(
        batch_size=d.batch_size,
        seed=cfg.train.seed,
        train=train,
        mode=d.mode if train else "all",
        buffer=d.buffer,
        shuffle=True,
        augment=d.augment,
        geometry=False,
    )
    masks = [sample_mask(m, keys) for m in metas]
    world, rank = (rt.world_size, rt.rank) if (train and rt is not None) else (1, 0)
    return PairStream(metas, masks, options, world_size=world, rank=rank, num_workers=d.num_workers)


def _layout(cfg: PretrainConfig, rt: dist.Runtime) -> dict:
    """Everything the data order and draws depend on: a resume must find it unchanged."""
    d = cfg.data
    return dict(
        world_size=rt.world_size,
        num_workers=d.num_workers,
        batch_size=d.batch_size,
        stores=list(d.stores),
        image_size=d.image_size,
        seed=cfg.train.seed,
        buffer=d.buffer,
        mode=d.mode,
        augment=dataclasses.asdict(d.augment),
        split=[d.val_fraction, d.test_fraction, d.split_seed],
    )


class CorrespondenceTask:
    """Correspondence pretraining: view pairs streamed from stores, the loss on C (MSE for the
    paper's cosine head, BCE for the prior head), validation AP beside the baselines.

    Args:
        cfg: the run's `PretrainConfig`.
    """

    name = "pretrain"
    score = "ap"

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.samples_per_batch = cfg.data.batch_size

    def layout(self, rt: dist.Runtime) -> dict:
        return _layout(self.cfg, rt)

    def prepare(self, rt: dist.Runtime, run_dir: Path, resuming: bool) -> None:
        # Split by CT volume; this rank's share of the training shards.
        cfg, d = self.cfg, self.cfg.data
        self.metas = [read_meta(p, allow_incomplete=d.allow_incomplete) for p in d.stores]
        split_path = RunDir(run_dir).split
        if resuming and split_path.is_file():
            self.split = load_split(split_path)
        else:
            keys = volume_keys(self.metas)
            self.split = split_volumes(keys, d.val_fraction, d.test_fraction, d.split_seed)
        self.definition = common_definition(self.metas)
        self._check_model(self.metas[0])
        self.transform = BatchTransform(d.display, d.image_size, d.xray)
        self.transform.factor(self.metas[0].image_shape)  # fail early on a size that does not fit
        self.train_mean = self._train_mean(run_dir, resuming)
        self.train_stream = make_stream(cfg, self.metas, self.split.keys("train"), rt, train=True)
        self.val_stream = (
            make_stream(cfg, self.metas, self.split.keys("val"), None, False)
            if self.split.val
            else None
        )

    def _check_model(self, meta: StoreMeta) -> None:
        m, t = self.cfg.model, self.cfg.train
        if t.loss not in LOSSES:
            raise ValueError(f"unknown train.loss {t.loss!r}; choose one of {', '.join(LOSSES)}")
        if m.head == "prior" and tuple(meta.grid) != (m.grid, m.grid):
            raise ValueError(
                f"{meta.path}: patch grid {meta.grid}, the prior head is built for "
                f"model.grid={m.grid}; set model.grid={meta.grid[0]}"
            )

    def _train_mean(self, run_dir: Path, resuming: bool):
        """The training split's mean matrix: read back when resuming, else computed."""
        self.train_pairs = None  # None: read back from the run, nothing to write
        if resuming and RunDir(run_dir).train_mean.is_file():
            mean, definition = load_train_mean(run_dir)
            if definition != self.definition:
                raise StoreError(
                    f"{run_dir}: trained on '{definition}' correspondences, the stores hold "
                    f"'{self.definition}'"
                )
            return mean
        stream = make_stream(self.cfg, self.metas, self.split.keys("train"), None, train=False)
        stream.set_epoch(0)
        mean, self.train_pairs = mean_matrix(make_loader(stream), [m.path for m in self.metas])
        return mean

    def save_split(self, run_dir: Path) -> None:
        save_split(RunDir(run_dir).split, self.metas, self.split)
        if self.train_pairs is not None:  # computed for this run: (over)write it
            save_train_mean(run_dir, self.train_mean, self.train_pairs, self.definition)

    def steps(self) -> int:
        t = self.cfg.train
        return t.steps or t.epochs * self.train_stream.batches_per_epoch(0)

    def build_model(self) -> torch.nn.Module:
        model = build_model(self.cfg.model)
        if model.head is not None and hasattr(model.head, "init_prior"):
            model.head.init_prior(torch.as_tensor(self.train_mean), seed=self.cfg.train.seed)
        return model

    def param_groups(self, model: torch.nn.Module) -> Iterable:
        return model.parameters()

    def batches(self, epoch: int, skip: int, rt: dist.Runtime) -> Iterable[dict]:
        self.train_stream.set_epoch(epoch, skip)
        return make_loader(self.train_stream, rt.device.type == "cuda")

    def loss(self, model: torch.nn.Module, batch: dict, rt: dist.Runtime) -> torch.Tensor:
        batch = self.transform(batch, rt.device)  # display, augmentation, resize on the device
        target = batch["corr_0to1"]
        with rt.autocast():
            out = model(batch["view0"], batch["view1"])
        pred = out["corr"]
        if pred.shape != target.shape:
            raise ValueError(
                f"model predicts {tuple(pred.shape)}, the store's corr is {tuple(target.shape)}: "
                "the token grid must equal the patch grid (adjust data.image_size, "
                "model.backbone_index or model.patch_size)"
            )
        t = self.cfg.train
        loss = t.loss if t.loss != "auto" else ("bce" if "logits" in out else "mse")
        if loss == "bce":
            if "logits" not in out:
                raise ValueError("train.loss=bce needs a head that predicts logits (model.head)")
            return bce_loss(out["logits"], target, t.pos_weight)
        return correspondence_loss(pred, target, pos_weight=t.pos_weight)

    def identify(self, batch: dict) -> str:
        info = batch["info"]  # (B, 5): view i, view j, volume id, store, sample
        return name_samples([m.path for m in self.metas], info[:, 3].tolist(), info[:, 4].tolist())

    def has_validation(self) -> bool:
        return bool(self.split.val)

    def validate(self, model: torch.nn.Module, rt: dist.Runtime) -> dict:
        self.val_stream.set_epoch(0)  # the same fixed random subset every time
        loader = make_loader(self.val_stream)
        cfg = self.cfg
        stores = [m.path for m in self.metas]
        t = cfg.train
        return evaluate(
            model, loader, rt, self.transform, cfg.metrics, t.val_batches, self.train_mean, stores
        )

    def describe(self, model: torch.nn.Module, rt: dist.Runtime, steps: int) -> str:
        init = "random init"
        if loaded_weights(model) is not None:
            init = f"weights from {loaded_weights(model)}"
        elif self.cfg.model.pretrained:
            init = f"{self.cfg.model.pretrained} hub weights"
        return (
            f"xmatch pretrain: {self.cfg.model.name} ({count_parameters(model) / 1e6:.2f} M "
            f"params, {init}) on {rt.device} x{rt.world_size}, amp={rt.amp_dtype}; "
            f"{self.train_stream.n_samples} training samples ({len(self.split.train)} CTs), "
            f"{steps} steps; '{self.definition}' correspondences"
        )

    def format_val(self, val: dict) -> str:
        return (
            f"val mse {val['mse']:.3g} ap {val['ap']:.3f} | no-image baselines: mean-matrix ap "
            f"{val['mean_ap']:.3f} mse {val['mean_mse']:.3g}, zero mse {val['zero_mse']:.3g} | "
            f"ap gain {val['ap_gain']:+.3f}"
        )


def resolve(cfg: PretrainConfig) -> PretrainConfig:
    """`cfg` with the model's sizes made explicit: the variant's own where the config leaves
    them at null, and the token grid from the first store's patch grid (what the run saves)."""
    m, d = cfg.model, cfg.data
    grid = None
    if m.grid is None and d.stores:
        try:
            grid = read_meta(d.stores[0], allow_incomplete=d.allow_incomplete).grid[0]
        except StoreError:  # reported where the stores are opened, after the device checks
            pass
    return dataclasses.replace(cfg, model=resolve_sizes(m, grid))


def pretrain(cfg: PretrainConfig) -> Path:
    """Train (or resume) the correspondence run described by `cfg`; returns the run directory."""
    check_config(cfg.model)  # before the stores are read: a wrong size fails at once
    return fit(CorrespondenceTask(resolve(cfg)))
