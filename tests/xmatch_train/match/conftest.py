"""A toy store and a tiny correspondence run trained on it for a few steps, and DRR PNGs of
one of its samples: the inputs of the end-to-end `xmatch match` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from helpers import tiny_config as trainer_config

from xmatch_train.config import load_config
from xmatch_train.match import write_png
from xmatch_train.pretrain import pretrain
from xmatch_train.testing import build_toy_store


def tiny_config(store: str, run_dir: Path) -> dict:
    """The trainer tests' `tiny_config` with the CPU default's prior head: 128 px views pooled
    to 64, 4 x 4 patches, no augmentation, 6 steps."""
    cfg = trainer_config(store, run_dir, image_size=64, augment={})
    cfg["model"] = {**cfg["model"], "head": "prior", "grid": 4}
    cfg["train"].update(steps=6, log_every=3, val_every=6, val_batches=1)
    return cfg


@pytest.fixture(scope="session")
def match_store(tmp_path_factory) -> str:
    """3 phantoms x 4 samples, V = 2, 128 px views, 32 px patches (4 x 4 grid)."""
    root = tmp_path_factory.mktemp("match_store")
    path = build_toy_store(
        root / "s.zarr", root / "cts", n_volumes=3, samples_per_volume=4, size=128, patch=32
    )
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(match_store, tmp_path_factory) -> Path:
    """A tiny run trained for 6 steps on `match_store`, its views pooled 128 -> 64 px."""
    root = tmp_path_factory.mktemp("match_run")
    cfg_path = root / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(match_store, root / "run")), encoding="utf-8")
    return pretrain(load_config(cfg_path))


@pytest.fixture(scope="session")
def drr_pngs(match_store, tmp_path_factory) -> dict:
    """Both views of store sample 0 as 16-bit PNGs, with their line integrals and true C."""
    root = tmp_path_factory.mktemp("match_pngs")
    group = zarr.open_group(match_store, mode="r")
    views = np.asarray(group["views"][0], dtype=np.float32)  # (2, 128, 128)
    return dict(
        a=write_png(views[0], root / "a.png"),
        b=write_png(views[1], root / "b.png"),
        views=views,
        corr=np.asarray(group["corr"][0, 0], dtype=np.float32),  # (16, 16)
    )
