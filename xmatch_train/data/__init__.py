"""Streaming view pairs and correspondence matrices from `drrgen build` stores."""

from xmatch_train.data.batch import BatchTransform
from xmatch_train.data.dataset import PairStream, StreamOptions, build_shards, make_loader
from xmatch_train.data.plan import Shard, WorkerPlan, epoch_plan, shuffle_order, worker_skips
from xmatch_train.data.splits import (
    VolumeSplit,
    load_split,
    sample_mask,
    save_split,
    split_volumes,
)
from xmatch_train.data.store import StoreError, StoreMeta, common_definition, pairs_of, read_meta
from xmatch_train.data.transforms import (
    AugmentConfig,
    DisplayConfig,
    GridOp,
    draw_photometric,
    photometric,
    to_display,
)
from xmatch_train.data.xray import XrayConfig, render

__all__ = [
    "AugmentConfig",
    "BatchTransform",
    "DisplayConfig",
    "GridOp",
    "PairStream",
    "Shard",
    "StoreError",
    "StoreMeta",
    "StreamOptions",
    "VolumeSplit",
    "WorkerPlan",
    "XrayConfig",
    "build_shards",
    "common_definition",
    "draw_photometric",
    "epoch_plan",
    "load_split",
    "make_loader",
    "pairs_of",
    "photometric",
    "read_meta",
    "render",
    "sample_mask",
    "save_split",
    "shuffle_order",
    "split_volumes",
    "to_display",
    "worker_skips",
]
