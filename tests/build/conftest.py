"""Fixtures for the build tests: tiny CT folders and tiny build configs."""

from __future__ import annotations

import numpy as np
import pytest

from drrgen.build import BuildConfig
from drrgen.volume import Volume, write_ct


def tiny_ct(shift: int = 0, shape=(40, 36, 32)) -> Volume:
    """A (nk, nj, ni) HU volume: an elliptic soft-tissue cylinder with an off-centre bone rod,
    on an anisotropic, rotated grid with an offset origin."""
    nk, nj, ni = shape
    k, j, i = np.mgrid[:nk, :nj, :ni].astype(np.float32)
    data = np.full(shape, -1000.0, np.float32)
    body = ((i - ni / 2) / (0.42 * ni)) ** 2 + ((j - nj / 2) / (0.38 * nj)) ** 2 < 1
    data[body] = 40.0
    rod = (i - ni / 2 - 3 - shift) ** 2 + (j - nj / 2 + 2) ** 2 < 9
    data[rod & (k > 4) & (k < nk - 4)] = 1200.0
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.6, 1.4, 2.0])
    affine[:3, 3] = [-25.0, 10.0, 40.0]
    return Volume(data, affine, "tiny")


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
