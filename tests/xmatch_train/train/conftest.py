"""Tiny stores built with the real `drrgen build` (in process) for the trainer's tests."""

from __future__ import annotations

import pytest

from xmatch_train.testing import build_toy_store


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """3 phantoms x 8 samples, V = 2, 64 px views, 16 px patches (4 x 4 grid), blocks of 4."""
    root = tmp_path_factory.mktemp("store2")
    return str(build_toy_store(root / "s.zarr", root / "cts", n_volumes=3, samples_per_volume=8))


@pytest.fixture(scope="session")
def store3(tmp_path_factory):
    """2 phantoms x 4 samples, V = 3 (pairs (0,1), (0,2), (1,2)), 32 px views, 8 px patches."""
    root = tmp_path_factory.mktemp("store3")
    path = build_toy_store(
        root / "s.zarr",
        root / "cts",
        n_volumes=2,
        samples_per_volume=4,
        views=3,
        size=32,
        patch=8,
        block=2,
        seed=5,
    )
    return str(path)
