"""Shared fixtures: a rotated, anisotropic, offset-origin HU volume."""

import numpy as np
import pytest

from drrgen.volume import Volume


def rotated_affine(seed: int, spacing=(0.7, 1.3, 2.5), origin=(-120.5, 33.25, 410.0)):
    """(4, 4) affine with a random proper rotation, anisotropic spacing and an offset origin."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    affine = np.eye(4)
    affine[:3, :3] = q @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def ct_volume() -> Volume:
    """(nk, nj, ni) = (9, 7, 6) integer-valued HU volume on a rotated anisotropic grid."""
    rng = np.random.default_rng(1)
    data = np.rint(rng.uniform(-1000, 2000, size=(9, 7, 6))).astype(np.float32)
    return Volume(data, rotated_affine(0), "test")
