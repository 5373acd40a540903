"""Correspondence pretraining (the paper's Table 1): the task, its evaluation against the
no-image baselines, and `xmatch eval`'s report."""

from xmatch_train.pretrain.baselines import BASELINES, BaselineMetrics, load_train_mean
from xmatch_train.pretrain.evaluate import evaluate, predict
from xmatch_train.pretrain.task import CorrespondenceTask, pretrain

__all__ = [
    "BASELINES",
    "BaselineMetrics",
    "CorrespondenceTask",
    "evaluate",
    "load_train_mean",
    "predict",
    "pretrain",
]
