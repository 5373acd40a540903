"""``xmatch finetune-corr`` as a `fit` task: annotated pairs in memory, the loss over the
annotated entries only, validation AP over the validation pairs' annotated entries (model
selection on it alone).

Run directory (`xmatch_train.train.rundir.RunDir`): ``config.yaml`` (resolved: the model, input
size and window actually used), ``split.json`` (pair ids per split and the annotation file),
``log.jsonl``, ``summary.json``, ``ckpt/``; ``train_mean.npz`` copied from the ``init_from``
run when it has one (its no-image baseline).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from drrgen.errors import UserError
from xmatch_train.corr_finetune.annotations import read_annotations
from xmatch_train.corr_finetune.config import CorrFinetuneConfig
from xmatch_train.corr_finetune.data import PairSet, load_pairs, split_pairs
from xmatch_train.corr_finetune.loss import loss_kind, masked_loss
from xmatch_train.corr_finetune.scoring import predict_pairs, score_entries
from xmatch_train.data.transforms import DisplayConfig, draw_photometric
from xmatch_train.models import build_model, count_parameters, model_from_checkpoint
from xmatch_train.models.registry import check_config
from xmatch_train.train import dist
from xmatch_train.train.loop import fit
from xmatch_train.train.rundir import RunDir


def resolve(cfg: CorrFinetuneConfig) -> CorrFinetuneConfig:
    """`cfg` with the ``init_from`` run's model, input size and window (the settings the
    weights need), or checked for a from-scratch run.

    Raises:
        UserError: from scratch without ``data.image_size``; flips asked for.
    """
    a = cfg.data.augment
    if a.hflip or a.vflip or a.rot90:
        raise UserError(
            "data.augment: flips and rotations would move the annotated patches; use "
            "brightness, contrast and invert only"
        )
    if cfg.init_from is None:
        if not cfg.data.image_size:
            raise UserError("data.image_size: required when fine-tuning from scratch")
        check_config(cfg.model)
        display = cfg.data.display or DisplayConfig()
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, display=display))
    from xmatch_train.finetune.guidance import load_pretrain_run, pretrain_run_dir
    from xmatch_train.match.matcher import _image_size

    pcfg, _ = load_pretrain_run(cfg.init_from, cfg.checkpoint)
    size = _image_size(pcfg, pretrain_run_dir(cfg.init_from, cfg.checkpoint))
    display = cfg.data.display or pcfg.data.display  # a window given wins (documented)
    data = dataclasses.replace(cfg.data, image_size=size, display=display)
    return dataclasses.replace(cfg, model=pcfg.model, data=data)


@torch.no_grad()
def token_grid(model: torch.nn.Module, size: int) -> tuple[int, int]:
    """(rows, cols) of the model's square token grid at input side `size`."""
    x = torch.zeros(1, 1, size, size)
    n = int(model(x, x)["corr"].shape[-1])
    side = int(round(n**0.5))
    return side, side


class AnnotationTask:
    """Correspondence fine-tuning on annotated pairs (masked loss, validation AP).

    Args:
        cfg: a resolved `CorrFinetuneConfig` (`resolve`).
    """

    name = "finetune-corr"
    score = "ap"

    def __init__(self, cfg: CorrFinetuneConfig):
        self.cfg = cfg
        self.samples_per_batch = cfg.data.batch_size

    def layout(self, rt: dist.Runtime) -> dict:
        d = self.cfg.data
        return dict(
            annotations=d.annotations,
            batch_size=d.batch_size,
            seed=self.cfg.train.seed,
            split=[d.val_fraction, d.test_fraction, d.split_seed],
            world_size=rt.world_size,
        )

    def prepare(self, rt: dist.Runtime, run_dir: Path, resuming: bool) -> None:
        d = self.cfg.data
        pairs = read_annotations(d.annotations)
        split_path = RunDir(run_dir).split
        if resuming and split_path.is_file():
            self.split = json.loads(split_path.read_text(encoding="utf-8"))["pairs"]
        else:
            self.split = split_pairs(pairs, d.val_fraction, d.test_fraction, d.split_seed)
        with torch.random.fork_rng():
            self.grid = token_grid(self._model(), d.image_size)
        keep = set(self.split["train"]) | set(self.split["val"])
        loaded = load_pairs(
            [p for p in pairs if p.id in keep], d.image_size, d.display, self.grid, d.fit, d.borders
        )
        self.train = loaded.subset(self.split["train"])
        self.val = loaded.subset(self.split["val"])

    def _model(self) -> torch.nn.Module:
        cfg = self.cfg
        if cfg.init_from is None:
            return build_model(cfg.model)
        from xmatch_train.finetune.guidance import checkpoint_path, load_pretrain_run

        _, ckpt = load_pretrain_run(cfg.init_from, cfg.checkpoint)
        where = checkpoint_path(cfg.init_from, cfg.checkpoint)
        return model_from_checkpoint(cfg.model, ckpt["model"], where)

    def save_split(self, run_dir: Path) -> None:
        record = dict(annotations=str(self.cfg.data.annotations), pairs=self.split)
        RunDir(run_dir).split.write_text(json.dumps(record, indent=1), encoding="utf-8")
        if self.cfg.init_from is not None:
            from xmatch_train.finetune.guidance import pretrain_run_dir

            mean = RunDir(pretrain_run_dir(self.cfg.init_from, self.cfg.checkpoint)).train_mean
            if mean.is_file():
                shutil.copyfile(mean, RunDir(run_dir).train_mean)

    def steps(self) -> int:
        t = self.cfg.train
        return t.steps or t.epochs * self._per_epoch()

    def _per_epoch(self) -> int:
        return -(-len(self.train) // self.cfg.data.batch_size)

    def build_model(self) -> torch.nn.Module:
        model = self._model()
        head = model.head
        if self.cfg.init_from is None and head is not None and hasattr(head, "init_prior"):
            # From scratch: the prior starts at the training entries' positive rate.
            n = self.grid[0] * self.grid[1]
            rate = self.train.positive_fraction()
            head.init_prior(torch.full((n, n), rate), seed=self.cfg.train.seed)
        return model

    def param_groups(self, model: torch.nn.Module) -> Iterable:
        return model.parameters()

    def batches(self, epoch: int, skip: int, rt: dist.Runtime) -> Iterable[dict]:
        seed = self.cfg.train.seed
        order = torch.randperm(
            len(self.train), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
        )
        bs = self.cfg.data.batch_size
        for k, s in enumerate(range(0, len(order), bs)):
            if k < skip:
                continue
            pick = order[s : s + bs]
            yield dict(
                view0=self._augment(self.train.view0[pick], [seed, epoch, k, 0]),
                view1=self._augment(self.train.view1[pick], [seed, epoch, k, 1]),
                target=self.train.target[pick],
                mask=self.train.mask[pick],
                index=pick,
            )

    def _augment(self, views: torch.Tensor, key: list[int]) -> torch.Tensor:
        """(b, 1, S, S) -> photometric augmentation per view (`draw_photometric`)."""
        a = self.cfg.data.augment
        if not (a.brightness or a.contrast or a.invert):
            return views
        rng = np.random.default_rng(key)
        p = torch.as_tensor(np.stack([draw_photometric(rng, a) for _ in range(len(views))]))
        c, b, inv = (p[:, i].view(-1, 1, 1, 1) for i in range(3))  # (b, 1, 1, 1) each
        out = ((views - 0.5) * c + 0.5 + b).clamp(0.0, 1.0)
        return torch.where(inv > 0, 1.0 - out, out)

    def loss(self, model: torch.nn.Module, batch: dict, rt: dist.Runtime) -> torch.Tensor:
        v0, v1 = batch["view0"].to(rt.device), batch["view1"].to(rt.device)  # (B, 1, S, S)
        with rt.autocast():
            out = model(v0, v1)  # corr (B, N, N), logits (B, N, N) for the prior head
        kind = loss_kind(self.cfg.train.loss, out)
        return masked_loss(out, batch["target"].to(rt.device), batch["mask"].to(rt.device), kind)

    def identify(self, batch: dict) -> str:
        return "pairs " + ", ".join(self.train.ids[int(i)] for i in batch["index"])

    def has_validation(self) -> bool:
        return len(self.val) > 0

    def validate(self, model: torch.nn.Module, rt: dist.Runtime) -> dict:
        return score_entries(predict_pairs(model, self.val, rt.device), self.val, self.cfg.metrics)

    def describe(self, model: torch.nn.Module, rt: dist.Runtime, steps: int) -> str:
        init = f"weights of {self.cfg.init_from}" if self.cfg.init_from else "random init"
        dropped = self.train.dropped + self.val.dropped
        return (
            f"xmatch finetune-corr: {self.cfg.model.name} ({count_parameters(model) / 1e6:.2f} M "
            f"params, {init}) on {rt.device}; {len(self.train)} training / {len(self.val)} "
            f"validation pairs of {self.cfg.data.annotations} ({_count(self.train)} / "
            f"{_count(self.val)} annotated entries, {dropped} point pairs outside the model's "
            f"view), {steps} steps at lr {self.cfg.optim.lr:g}"
        )

    def format_val(self, val: dict) -> str:
        return (
            f"val ap {val['ap']:.3f} precision {val['precision']:.3f} recall "
            f"{val['recall']:.3f} (chance ap {val['positive_fraction']:.3f})"
        )


def _count(pairs: PairSet) -> int:
    return sum(len(e) for e in pairs.entries)


def finetune_corr(cfg: CorrFinetuneConfig) -> Path:
    """Fine-tune (or resume) the run described by `cfg`; returns the run directory."""
    return fit(AnnotationTask(resolve(cfg)))
