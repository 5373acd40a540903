"""Configuration of a fine-tuning run (YAML in ``pipelines/finetune_*.yaml`` + dotted overrides).

The optimizer and loop sections are those of the pretraining (`xmatch_train.config.OptimConfig`,
`TrainConfig`); loading, overrides and saving use the same functions
(``load_config(path, overrides, cls=FinetuneConfig)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xmatch_train.config import OptimConfig, TrainConfig
from xmatch_train.data.transforms import AugmentConfig


@dataclass(frozen=True)
class StudyDataConfig:
    """Where the studies come from and how they are read.

    Attributes:
        format: ``mura`` (MURA v1.1 as distributed), ``grazpedwri`` (GRAZPEDWRI-DX as
            distributed) or ``csv`` (the generic study CSV, e.g. the synthetic fracture dataset
            written by ``drrgen fracture``).
        root: MURA: the folder containing ``MURA-v1.1``; GRAZPEDWRI-DX: the folder with its
            ``dataset.csv``; csv: the CSV file or its folder.
        body_parts: MURA body parts (``XR_<PART>``) to keep.
        min_views: studies with fewer images are dropped (2 views are used).
        val_fraction: patients of the training split held out for validation (model selection)
            when the data has no ``val`` split.
        test_fraction: GRAZPEDWRI-DX (no official split): patients held out as the test set.
        split_seed: seed of the hold-outs.
        image_size: network input side, pixels.
        batch_size: per-rank batch size (studies).
        num_workers: DataLoader workers per rank.
        cache_images: keep decoded images in memory (small datasets; use with num_workers 0:
            DataLoader workers restart every epoch and would lose their cache).
        augment: photometric augmentations (brightness, contrast, inversion; flips unused).
    """

    format: str = "csv"
    root: str = "data/fracture"
    body_parts: tuple[str, ...] = ("ELBOW", "FOREARM", "HAND", "WRIST")
    min_views: int = 2
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    image_size: int = 256
    batch_size: int = 16
    num_workers: int = 2
    cache_images: bool = False
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(brightness=0.1, contrast=0.2, invert=0.2)
    )


@dataclass(frozen=True)
class ClassifierConfig:
    """The ViT-S classifier.

    Attributes:
        fusion: ``single``, ``late`` or ``early``.
        width, depth, heads, mlp_dim, patch_size, stem: the ViT's sizes and patch embedding
            (``patch``: linear, the paper's; ``conv``: a small convolutional stem); null: those
            of the pretraining in ``init_from``, else ViT-S's (`xmatch_train.models.VIT_S`:
            384, 6, 4, 1536, 16, patch). A value given must match the pretraining's.
        drop_path: stochastic depth rate.
        dropout: dropout before the head.
        init_from: a ``vit_s`` correspondence pretraining (run directory or checkpoint file)
            to initialise the encoder from; None: random initialisation.
        pretrained_file: a local timm ViT checkpoint to initialise from instead (e.g. ImageNet
            ``vit_small_patch16_224`` weights the user downloaded); None: none.
        input_mean, input_std: image normalisation (those of the pretraining).
        min_pretrain_gain: a pretraining used by ``init_from`` or the guidance must have beaten
            its mean-matrix baseline by this validation AP (None: not checked).
    """

    fusion: str = "early"
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    patch_size: int | None = None
    stem: str | None = None
    drop_path: float = 0.0
    dropout: float = 0.0
    init_from: str | None = None
    pretrained_file: str | None = None
    input_mean: float = 0.45
    input_std: float = 0.225
    min_pretrain_gain: float | None = 0.02


@dataclass(frozen=True)
class GuidanceConfig:
    """Correspondence-guided attention.

    Attributes:
        enabled: add alpha_l * C to the cross-view attention logits (early fusion only).
        run: the correspondence pretraining whose predicted C guides (run directory or
            checkpoint file); None: ``model.init_from``.
        checkpoint: ``best`` or ``last`` checkpoint of that run.
        alpha_init: initial alpha of every layer.
        alpha_lr: learning rate of the alphas (None: ``optim.lr``); a few scalars that start
            at alpha_init would barely move at a fine-tuning rate of 1e-5.
    """

    enabled: bool = False
    run: str | None = None
    checkpoint: str = "best"
    alpha_init: float = 1.0
    alpha_lr: float | None = None


@dataclass(frozen=True)
class TableConfig:
    """The Table-3 comparison run by ``xmatch finetune-table`` (ignored by single runs).

    Attributes:
        seeds: seeds per row (mean +/- std over them).
        rows: rows to run, from ``single``, ``late``, ``early``, ``early_pretrain``,
            ``early_pretrain_guidance``.
        pretrain_run: the ``vit_s`` correspondence pretraining (run directory or checkpoint)
            the ``*_pretrain*`` rows start from and whose C guides the guided row.
        pretrained_lr: learning rate of the rows that start from the pretraining (the paper's
            1e-5); the other rows use ``optim.lr``.
        out: where table.md and metrics.json go (None: ``run_dir/table``).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    rows: tuple[str, ...] = ("single", "late", "early", "early_pretrain", "early_pretrain_guidance")
    pretrain_run: str | None = None
    pretrained_lr: float = 1e-5
    out: str | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """A fracture fine-tuning run.

    Attributes:
        run_dir: config, split, logs, checkpoints.
        data, model, guidance, optim, train: the parts.
        select_metric: validation metric (higher is better) that picks ``ckpt/best.pt``:
            ``auc`` (threshold-free, steadier on small validation sets), ``kappa``,
            ``accuracy`` or ``neg_loss``.
        threshold: probability threshold of a positive study.
        table: the Table-3 comparison (``xmatch finetune-table``).
    """

    run_dir: str = "runs/finetune"
    data: StudyDataConfig = field(default_factory=StudyDataConfig)
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    train: TrainConfig = field(default_factory=TrainConfig)
    select_metric: str = "auc"
    threshold: float = 0.5
    table: TableConfig = field(default_factory=TableConfig)
