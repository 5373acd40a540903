"""The paper's Table 2 protocol: correspondence fine-tuning and scoring on partially annotated
pairs (a few positive and many negative point correspondences per pair).

The annotation format (`annotations`) -> points to the model's patch pairs, through the map
``xmatch match`` uses (`entries`) -> pairs in memory and the split by pair (`data`) -> the loss
over the annotated entries (`loss`) -> ``xmatch finetune-corr``, a task of the generic engine
(`task`, `config`) -> ``xmatch eval --annotations`` (`scoring`, `evaluate`). `standin` writes
an offline stand-in for real annotated pairs from a store (``xmatch make-standin``).
"""

from xmatch_train.corr_finetune.annotations import (
    SCHEMA,
    AnnotatedPair,
    read_annotations,
    write_annotations,
)
from xmatch_train.corr_finetune.config import AnnotationDataConfig, CorrFinetuneConfig
from xmatch_train.corr_finetune.data import PairSet, load_pairs, split_pairs
from xmatch_train.corr_finetune.entries import Entries, pair_entries, patch_centre, point_patch
from xmatch_train.corr_finetune.evaluate import evaluate_annotation_runs, is_corr_finetune_run
from xmatch_train.corr_finetune.loss import masked_loss
from xmatch_train.corr_finetune.scoring import chance_scores, score_entries
from xmatch_train.corr_finetune.standin import StandinOptions, detector_image, make_standin
from xmatch_train.corr_finetune.task import AnnotationTask, finetune_corr

__all__ = [
    "SCHEMA",
    "AnnotatedPair",
    "AnnotationDataConfig",
    "AnnotationTask",
    "CorrFinetuneConfig",
    "Entries",
    "PairSet",
    "StandinOptions",
    "chance_scores",
    "detector_image",
    "evaluate_annotation_runs",
    "finetune_corr",
    "is_corr_finetune_run",
    "load_pairs",
    "make_standin",
    "masked_loss",
    "pair_entries",
    "patch_centre",
    "point_patch",
    "read_annotations",
    "score_entries",
    "split_pairs",
    "write_annotations",
]
