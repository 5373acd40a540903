"""Multi-view fracture fine-tuning: ViT-S with single / late / early fusion, correspondence
pretraining and correspondence-guided attention (the paper's Table 3)."""

from xmatch_train.finetune.config import (
    ClassifierConfig,
    FinetuneConfig,
    GuidanceConfig,
    StudyDataConfig,
    TableConfig,
)
from xmatch_train.finetune.dataset import EpochBatches, StudyDataset, load_image
from xmatch_train.finetune.guidance import CorrespondenceGuide, pool_correspondence
from xmatch_train.finetune.model import FUSIONS, FractureClassifier, guidance_bias
from xmatch_train.finetune.report import evaluate_finetune_runs, is_finetune_run
from xmatch_train.finetune.studies import (
    Study,
    StudyDataError,
    choose_pair,
    read_grazpedwri,
    read_mura,
    read_study_csv,
)
from xmatch_train.finetune.table import ROWS, row_config, run_table
from xmatch_train.finetune.task import FinetuneTask, build_classifier, finetune

__all__ = [
    "FUSIONS",
    "ROWS",
    "ClassifierConfig",
    "CorrespondenceGuide",
    "EpochBatches",
    "FinetuneConfig",
    "FinetuneTask",
    "FractureClassifier",
    "GuidanceConfig",
    "Study",
    "StudyDataConfig",
    "StudyDataError",
    "StudyDataset",
    "TableConfig",
    "build_classifier",
    "choose_pair",
    "evaluate_finetune_runs",
    "finetune",
    "guidance_bias",
    "is_finetune_run",
    "load_image",
    "pool_correspondence",
    "read_grazpedwri",
    "read_mura",
    "read_study_csv",
    "row_config",
    "run_table",
]
