"""A toy store, the stand-in annotated pairs written from it, and a tiny correspondence run
(the prior head, 128 px views pooled to 64 px, 4 x 4 patches): the inputs of the Table 2 tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import tiny_config as trainer_config

from xmatch_train.config import load_config
from xmatch_train.corr_finetune import StandinOptions, make_standin
from xmatch_train.pretrain import pretrain
from xmatch_train.testing import write_toy_store


@pytest.fixture(scope="session")
def standin_store(tmp_path_factory) -> str:
    """3 phantoms x 4 samples, V = 2, 128 px views, 32 px patches (4 x 4 grid)."""
    root = tmp_path_factory.mktemp("t2_store")
    return str(write_toy_store(root / "s.zarr", n_volumes=3, samples_per_volume=4, size=128,
                               patch=32))  # fmt: skip


@pytest.fixture(scope="session")
def standin(standin_store, tmp_path_factory) -> Path:
    """The stand-in of `standin_store`: 2 positives and 5 negatives per pair."""
    out = tmp_path_factory.mktemp("t2_standin")
    path, _, _ = make_standin(standin_store, out, StandinOptions(positives=2, negatives=5))
    return path


@pytest.fixture(scope="session")
def tiny_pretrained(standin_store, tmp_path_factory) -> Path:
    """A tiny prior-head run trained for 4 steps on `standin_store`."""
    root = tmp_path_factory.mktemp("t2_run")
    cfg = trainer_config(standin_store, root / "run", image_size=64, augment={})
    cfg["model"] = {**cfg["model"], "head": "prior", "grid": 4}
    cfg["train"].update(steps=4, log_every=2, val_every=4, val_batches=1)
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return pretrain(load_config(path))
