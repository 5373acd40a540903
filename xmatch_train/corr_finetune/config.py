"""Configuration of ``xmatch finetune-corr`` (YAML in ``pipelines/table2*.yaml`` + dotted
overrides), loaded by the one config system: ``load_config(path, overrides,
cls=CorrFinetuneConfig)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xmatch_train.config import OptimConfig, TrainConfig
from xmatch_train.data.transforms import AugmentConfig, DisplayConfig
from xmatch_train.metrics import MetricConfig
from xmatch_train.models.registry import ModelConfig


@dataclass(frozen=True)
class AnnotationDataConfig:
    """The annotated pairs and how their images become model inputs.

    Attributes:
        annotations: the annotation file (`xmatch_train.corr_finetune.annotations`).
        val_fraction, test_fraction: pairs held out (split by pair, seeded by `split_seed`)
            when the file gives no splits; the rest trains (0.1 / 0.3: the paper's 60/10/30).
        split_seed: seed of that split.
        image_size: model input side (None: the ``init_from`` run's; required from scratch).
        display: the percentile window (None: the ``init_from`` run's).
        fit: ``pad`` or ``crop``: how a non-square image becomes square (``xmatch match``).
        borders: ``auto`` (crop constant border bands of DICOM images), ``crop`` or ``keep``.
        batch_size: pairs per step.
        augment: photometric augmentations (brightness, contrast, invert; flips are refused:
            they would move the annotated patches).
    """

    annotations: str = "data/table2/annotations.json"
    val_fraction: float = 0.1
    test_fraction: float = 0.3
    split_seed: int = 0
    image_size: int | None = None
    display: DisplayConfig | None = None
    fit: str = "pad"
    borders: str = "auto"
    batch_size: int = 8
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class CorrFinetuneConfig:
    """A correspondence fine-tuning run on annotated pairs (the paper's Table 2 protocol).

    Attributes:
        run_dir: config, split, logs, checkpoints.
        init_from: a correspondence run (``xmatch pretrain``; its directory or a checkpoint
            file) whose weights, model, input size and window are used; None: from scratch
            with `model`.
        checkpoint: ``best`` or ``last`` checkpoint of `init_from`.
        data: the annotated pairs.
        model: the architecture from scratch (replaced by `init_from`'s when that is set; the
            run's saved ``config.yaml`` holds the one used).
        optim: Adam; the paper fine-tunes at lr 1e-5.
        train: loop settings; ``train.loss`` ``auto`` is the model's own (BCE for the prior
            head, MSE for the cosine head), over the annotated entries only.
        metrics: thresholds (an annotated positive is label 1 > ``gt_threshold``; a prediction
            is positive above ``pred_threshold``, 0.2).
    """

    run_dir: str = "runs/table2/finetune"
    init_from: str | None = None
    checkpoint: str = "best"
    data: AnnotationDataConfig = field(default_factory=AnnotationDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricConfig = field(default_factory=lambda: MetricConfig(extra_thresholds=()))
