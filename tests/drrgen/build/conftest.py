"""Fixtures for the build tests: tiny CT folders and tiny build configs."""

from __future__ import annotations

import pytest
from helpers import tiny_ct

from drrgen.build import BuildConfig
from drrgen.volume import write_ct


@pytest.fixture(scope="session")
def ct_dir(tmp_path_factory):
    """A folder with two good tiny CTs in sub-folders (NIfTI and MetaImage)."""
    root = tmp_path_factory.mktemp("cts")
    write_ct(tiny_ct(0), root / "a" / "ct0.nii.gz")
    write_ct(tiny_ct(4), root / "b" / "ct1.mha")
    return root


@pytest.fixture
def tiny_cfg() -> BuildConfig:
    """4 samples per CT in blocks of 2, 32 px views, 8 px patches."""
    return BuildConfig(samples_per_ct=4, block=2, size=32, patch=8, seed=3)
