"""`FinetuneTask`: fracture classification as a task of the shared training loop
(`xmatch_train.train.loop.fit`), and `finetune`, its entry point.

Per step: a batch of two-view studies (random view pair per study), the paper's photometric
augmentation per view on the device, the frozen guide's C of the clean views (guided runs),
binary cross-entropy of the study logit. Validation scores the validation studies with the fixed
view pair; ``select_metric`` picks ``ckpt/best.pt``. The split (study ids per split) is saved
in ``split.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xmatch_train.data.batch import photometric
from xmatch_train.finetune.config import FinetuneConfig
from xmatch_train.finetune.dataset import (
    EpochBatches,
    StudyDataset,
    batches_per_epoch,
    make_loader,
    to_device,
)
from xmatch_train.finetune.guidance import (
    CorrespondenceGuide,
    pretrain_config,
    pretrain_run_dir,
    pretrained_encoder_state,
)
from xmatch_train.finetune.model import FUSIONS, FractureClassifier
from xmatch_train.finetune.studies import (
    SPLITS,
    Study,
    carve_validation,
    read_grazpedwri,
    read_mura,
    read_study_csv,
    summary,
)
from xmatch_train.metrics import classification_metrics
from xmatch_train.models import VIT_S, build_vit, count_parameters
from xmatch_train.models.backbone import loaded_weights
from xmatch_train.pretrain.baselines import check_beats_baseline
from xmatch_train.train import dist
from xmatch_train.train.loop import fit
from xmatch_train.train.rundir import RunDir

SELECT = ("auc", "kappa", "accuracy", "neg_loss")
FORMATS = ("mura", "grazpedwri", "csv")


def resolve_sizes(cfg: FinetuneConfig) -> FinetuneConfig:
    """`cfg` with the ViT's sizes explicit: those ``model`` leaves at null taken from the
    pretraining in ``model.init_from`` (whose weights must fit), else ViT-S's.

    Raises:
        ValueError: a size given differs from the pretraining's (names both).
    """
    m = cfg.model
    keys = tuple(VIT_S)
    given = {k: getattr(m, k) for k in keys if getattr(m, k) is not None}
    if not m.init_from:
        return replace(cfg, model=replace(m, **(VIT_S | given)))
    pre = pretrain_config(m.init_from).model
    theirs = {k: getattr(pre, k) for k in keys} | {"image_size": pre.img_size}
    mine = given | {"image_size": cfg.data.image_size}
    clash = {k: (v, theirs[k]) for k, v in mine.items() if v != theirs[k]}
    if clash:
        said = ", ".join(f"{k} {a} (pretraining: {b})" for k, (a, b) in clash.items())
        raise ValueError(
            f"model.init_from {m.init_from}: this config's ViT differs from the pretraining's: "
            f"{said}; leave the model sizes out (null) to take the pretraining's"
        )
    return replace(cfg, model=replace(m, **{k: theirs[k] for k in keys}))


def check_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """`cfg` with its ViT sizes made explicit (`resolve_sizes`); raise `ValueError` naming the
    option for inconsistent settings."""
    cfg = resolve_sizes(cfg)
    if cfg.data.format not in FORMATS:
        raise ValueError(f"data.format must be one of {FORMATS}, got {cfg.data.format!r}")
    if cfg.model.fusion not in FUSIONS:
        raise ValueError(f"model.fusion must be one of {FUSIONS}, got {cfg.model.fusion!r}")
    if cfg.guidance.enabled and cfg.model.fusion != "early":
        raise ValueError("guidance.enabled needs model.fusion=early")
    if cfg.guidance.enabled and not (cfg.guidance.run or cfg.model.init_from):
        raise ValueError("guidance.enabled needs guidance.run (or model.init_from): a pretraining")
    if cfg.select_metric not in SELECT:
        raise ValueError(f"select_metric must be one of {SELECT}, got {cfg.select_metric!r}")
    for key in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(cfg.data, key) < 1:
            raise ValueError(f"data.{key} must be in [0, 1), got {getattr(cfg.data, key)}")
    if cfg.data.image_size % cfg.model.patch_size:
        raise ValueError(
            f"data.image_size {cfg.data.image_size} must be a multiple of model.patch_size "
            f"{cfg.model.patch_size}"
        )
    return cfg


def load_studies(cfg: FinetuneConfig) -> list[Study]:
    """The studies of ``cfg.data`` with their train / val / test split."""
    d = cfg.data
    if d.format == "mura":
        studies = read_mura(d.root, d.body_parts, d.min_views)
    elif d.format == "grazpedwri":
        studies = read_grazpedwri(d.root, d.min_views, d.test_fraction, d.split_seed)
    else:
        studies = read_study_csv(d.root, d.min_views)
    if not studies:
        raise ValueError(f"{d.root}: no studies with at least {d.min_views} views")
    return carve_validation(studies, d.val_fraction, d.split_seed)


def apply_split(studies: list[Study], path: Path) -> list[Study]:
    """Studies with the split recorded in ``split.json`` (a resumed or evaluated run)."""
    try:
        recorded = json.loads(Path(path).read_text(encoding="utf-8"))["studies"]
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a fine-tuning split file ({err})") from err
    split_of = {sid: name for name in SPLITS for sid in recorded.get(name, [])}
    missing = [s.study_id for s in studies if s.study_id not in split_of]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} studies are not in the recorded split, "
            f"e.g. {missing[:3]}; the dataset changed since the run started"
        )
    return [replace(s, split=split_of[s.study_id]) for s in studies]


def guide_source(cfg: FinetuneConfig) -> str | None:
    """The pretraining run whose C guides attention (None when guidance is off)."""
    if not cfg.guidance.enabled:
        return None
    return cfg.guidance.run or cfg.model.init_from


def build_classifier(cfg: FinetuneConfig, pretrained: bool = True) -> FractureClassifier:
    """The classifier of `cfg`, its encoder initialised
    from ``model.init_from`` (a ``vit_s`` correspondence pretraining) or
    ``model.pretrained_file`` (timm weights) when `pretrained`.

    Raises:
        ValueError: a size the config gives differs from the pretraining's (`resolve_sizes`).
    """
    if pretrained:
        cfg = resolve_sizes(cfg)
    m = cfg.model
    sizes = {k: getattr(m, k) for k in VIT_S}
    pretrained_file = m.pretrained_file if pretrained else None
    encoder = build_vit(cfg.data.image_size, sizes, m.drop_path, pretrained_file)
    if pretrained and m.init_from:
        state, _ = pretrained_encoder_state(m.init_from)
        encoder.load_state_dict(state)  # sizes checked by `resolve_sizes`
    return FractureClassifier(
        encoder,
        m.fusion,
        cfg.guidance.enabled,
        cfg.guidance.alpha_init,
        m.dropout,
        m.input_mean,
        m.input_std,
    )


def model_inputs(
    batch: dict, rt: dist.Runtime, guide: CorrespondenceGuide | None, augment: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(views (B, 2, 1, S, S) augmented on the device, C of the clean views or None, labels)."""
    batch = to_device(batch, rt.device)
    clean = torch.stack([batch["view0"], batch["view1"]], dim=1)  # (B, 2, 1, S, S)
    views = clean
    if augment:
        b = clean.shape[0]
        flat = photometric(clean.flatten(0, 1), batch["photo"].flatten(0, 1))
        views = flat.view(b, 2, *flat.shape[1:])
    corr = guide(clean) if guide is not None else None
    return views, corr, batch["label"].float()


def check_finite(dataset: StudyDataset, index: torch.Tensor, logits: torch.Tensor) -> None:
    """Name the studies of a batch whose logits are not finite (scikit-learn would fail later
    with "Input contains NaN", naming nothing). Images are finite (`load_image` checks them),
    so the weights are not.

    Raises:
        ValueError: names the studies.
    """
    bad = (~torch.isfinite(logits)).cpu()  # one host sync per batch
    if bool(bad.any()):
        studies = [dataset.studies[int(i)].study_id for i in index[bad].tolist()]
        raise ValueError(
            f"studies {', '.join(studies)}: the model predicts non-finite logits from finite "
            "images (non-finite weights in the checkpoint, or in its guiding pretraining?)"
        )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: StudyDataset,
    rt: dist.Runtime,
    guide: CorrespondenceGuide | None,
    batch_size: int,
    workers: int = 0,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Study probabilities with the fixed view pair, in dataset order.

    Args:
        progress: label of a tqdm bar over the batches (None: no bar).

    Returns:
        (S,) labels, (S,) probabilities of abnormal, (S,) logits.
    """
    from tqdm import tqdm

    was = model.training
    model.eval()
    labels, logits = [], []
    try:
        sampler = EpochBatches(len(dataset), batch_size, shuffle=False)
        loader = make_loader(dataset, sampler, workers)
        bar = tqdm(loader, desc=progress, disable=progress is None, dynamic_ncols=True)
        for batch in bar:
            views, corr, label = model_inputs(batch, rt, guide, augment=False)
            with rt.autocast():
                logit = model(views, corr)
            check_finite(dataset, batch["index"], logit)
            logits.append(logit.float().cpu())
            labels.append(label.cpu())
    finally:
        model.train(was)
    logit = torch.cat(logits).numpy()
    return torch.cat(labels).numpy(), 1.0 / (1.0 + np.exp(-logit)), logit


def scores(labels: np.ndarray, probs: np.ndarray, logits: np.ndarray, threshold: float) -> dict:
    """`classification_metrics` plus the mean BCE ``loss`` and ``neg_loss``."""
    out = classification_metrics(labels, probs, threshold)
    loss = float(
        F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels))
    )
    return dict(out, loss=loss, neg_loss=-loss)


class FinetuneTask:
    """Fracture classification on two-view studies (see the module docstring).

    Args:
        cfg: the run's `FinetuneConfig`.
    """

    name = "finetune"

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = check_config(cfg)
        self.score = cfg.select_metric
        self.samples_per_batch = cfg.data.batch_size
        self.guide: CorrespondenceGuide | None = None
        self.world_size = 1

    def layout(self, rt: dist.Runtime) -> dict:
        d = self.cfg.data
        return dict(
            world_size=rt.world_size,
            batch_size=d.batch_size,
            image_size=d.image_size,
            format=d.format,
            root=d.root,
        )

    def prepare(self, rt: dist.Runtime, run_dir: Path, resuming: bool) -> None:
        cfg, d = self.cfg, self.cfg.data
        self.world_size = rt.world_size
        studies = load_studies(cfg)
        split_path = RunDir(run_dir).split
        if resuming and split_path.is_file():
            studies = apply_split(studies, split_path)
        self.studies = studies
        part = {name: [s for s in studies if s.split == name] for name in SPLITS}
        if len(part["train"]) < d.batch_size * rt.world_size:
            raise ValueError(
                f"{d.root}: {len(part['train'])} training studies, fewer than one batch of "
                f"{d.batch_size} x {rt.world_size} rank(s)"
            )
        seed = cfg.train.seed
        self.train_set = StudyDataset(
            part["train"], d.image_size, True, d.augment, seed, d.cache_images
        )
        self.val_set = StudyDataset(part["val"], d.image_size, False, cache=d.cache_images)
        for run in {cfg.model.init_from, guide_source(cfg)} - {None}:
            check_beats_baseline(pretrain_run_dir(run), cfg.model.min_pretrain_gain)
        source = guide_source(cfg)
        if source is not None:
            grid = (d.image_size // cfg.model.patch_size,) * 2
            self.guide = CorrespondenceGuide.from_run(source, grid, cfg.guidance.checkpoint)
            self.guide.to(rt.device)

    def save_split(self, run_dir: Path) -> None:
        record = dict(
            source=dict(format=self.cfg.data.format, root=self.cfg.data.root),
            counts=summary(self.studies),
            studies={n: [s.study_id for s in self.studies if s.split == n] for n in SPLITS},
        )
        RunDir(run_dir).split.write_text(json.dumps(record, indent=1), encoding="utf-8")

    def steps(self) -> int:
        t, d = self.cfg.train, self.cfg.data
        per_epoch = batches_per_epoch(len(self.train_set), d.batch_size, self.world_size)
        return t.steps or t.epochs * per_epoch

    def build_model(self) -> torch.nn.Module:
        return build_classifier(self.cfg)

    def param_groups(self, model: FractureClassifier) -> Iterable:
        alpha_lr = self.cfg.guidance.alpha_lr
        if model.alpha is None or alpha_lr is None:
            return model.parameters()
        rest = [p for n, p in model.named_parameters() if n != "alpha"]
        return [{"params": rest}, {"params": [model.alpha], "lr": alpha_lr}]

    def batches(self, epoch: int, skip: int, rt: dist.Runtime) -> Iterable[dict]:
        d = self.cfg.data
        self.train_set.set_epoch(epoch)
        sampler = EpochBatches(
            len(self.train_set),
            d.batch_size,
            seed=self.cfg.train.seed,
            epoch=epoch,
            world_size=rt.world_size,
            rank=rt.rank,
            skip=skip,
        )
        return make_loader(self.train_set, sampler, d.num_workers, rt.device.type == "cuda")

    def loss(self, model: torch.nn.Module, batch: dict, rt: dist.Runtime) -> torch.Tensor:
        views, corr, label = model_inputs(batch, rt, self.guide, augment=True)
        with rt.autocast():
            logits = model(views, corr)
        return F.binary_cross_entropy_with_logits(logits.float(), label)

    def identify(self, batch: dict) -> str:
        studies = self.train_set.studies
        return f"{self.cfg.data.root}: studies " + ", ".join(
            studies[i].study_id for i in batch["index"].tolist()
        )

    def has_validation(self) -> bool:
        return len(self.val_set) > 0

    def validate(self, model: torch.nn.Module, rt: dist.Runtime) -> dict:
        d = self.cfg.data
        labels, probs, logits = predict(
            model, self.val_set, rt, self.guide, d.batch_size, d.num_workers
        )
        out = scores(labels, probs, logits, self.cfg.threshold)
        if model.alpha is not None:
            out["alpha"] = [round(float(a), 4) for a in model.alpha.detach().cpu()]
        return out

    def describe(self, model: torch.nn.Module, rt: dist.Runtime, steps: int) -> str:
        cfg, counts = self.cfg, summary(self.studies)
        init = "random init"
        if cfg.model.init_from:
            init = f"encoder from {cfg.model.init_from}"
        elif loaded_weights(model) is not None:
            init = f"timm weights {loaded_weights(model)}"
        guided = f", guided by {guide_source(cfg)}" if self.guide is not None else ""
        return (
            f"xmatch finetune: ViT ({count_parameters(model) / 1e6:.2f} M params), "
            f"{cfg.model.fusion} fusion, {init}{guided}; on {rt.device} x{rt.world_size}, "
            f"amp={rt.amp_dtype}; studies train {counts['train']['studies']} / val "
            f"{counts['val']['studies']} / test {counts['test']['studies']}, {steps} steps"
        )

    def format_val(self, val: dict) -> str:
        return (
            f"val auc {val['auc']:.3f} kappa {val['kappa']:.3f} acc {val['accuracy']:.3f} "
            f"loss {val['loss']:.3f}"
        )


def finetune(cfg: FinetuneConfig) -> Path:
    """Train (or resume) the fine-tuning run `cfg`; returns the run directory."""
    return fit(FinetuneTask(cfg))
