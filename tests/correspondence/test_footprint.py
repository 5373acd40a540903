"""Sparse Joseph footprints: the pinhole map and the candidate box."""

import numpy as np
import pytest

from drrgen.correspondence.coarse import CoarseGrid
from drrgen.correspondence.footprint import footprints, pinhole, pinhole_matrix
from drrgen.geometry import View, carm_view
from drrgen.volume.volume import Volume


def test_pinhole_matrix_matches_project_points():
    rng = np.random.default_rng(0)
    view = View([10, -900, 40], [0, 600, -20], [1.1, 0.2, 0.0], [0.0, 0.1, -0.9], (48, 64))
    xyz = rng.normal(0, 80, size=(200, 3))
    hom = np.c_[xyz, np.ones(len(xyz))] @ pinhole_matrix(view).T
    assert np.all(hom[:, 2] > 0)
    np.testing.assert_allclose(hom[:, :2] / hom[:, 2:], view.project_points(xyz), atol=1e-9)


def test_pinhole_in_index_space_of_a_skewed_grid_gives_the_same_pixels():
    # Projection is an incidence property, so it survives any affine change of frame.
    rng = np.random.default_rng(2)
    view = carm_view(35, -20, pixel_mm=1.3, shape=(40, 56), isocenter=(5, 8, -3))
    affine = np.eye(4)
    affine[:3, :3] = np.array([[2.0, 0.7, 0.0], [-0.4, 3.0, 0.5], [0.2, 0.0, 1.5]])
    affine[:3, 3] = [-30.0, 12.0, 7.0]
    inv = np.linalg.inv(affine)
    s, det = (inv[:3, :3] @ p + inv[:3, 3] for p in (view.source, view.detector_center))
    du, dv = inv[:3, :3] @ view.u, inv[:3, :3] @ view.v
    ijk = rng.normal(0, 20, size=(100, 3))
    hom = np.c_[ijk, np.ones(len(ijk))] @ pinhole(s, det, du, dv, 40, 56).T
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    assert np.all(hom[:, 2] > 0)
    np.testing.assert_allclose(hom[:, :2] / hom[:, 2:], view.project_points(xyz), atol=1e-9)


def _dense_weights(grid, view, patch, vox):
    """Joseph weight of every voxel on every patch ray, straight from the definition (numpy)."""
    coarse_view = view.downsample(patch)
    s = grid.world_to_index(coarse_view.source)
    d = grid.world_to_index(coarse_view.pixel_centers().reshape(-1, 3)) - s
    m = np.argmax(np.abs(d), axis=1)
    step_mm = np.linalg.norm(d @ grid.affine[:3, :3].T, axis=1) / np.abs(d[np.arange(len(d)), m])
    out = np.zeros((len(vox), len(d)))
    for n, v in enumerate(vox.astype(np.float64)):
        dm = d[np.arange(len(d)), m]
        t = (v[m] - s[m]) / dm
        pos = s[None, :] + t[:, None] * d
        tent = np.clip(1.0 - np.abs(pos - v[None, :]), 0.0, None)
        tent[np.arange(len(d)), m] = 1.0
        out[n] = np.where((t >= 0) & (t <= 1), step_mm * tent.prod(1), 0.0)
    return out


@pytest.mark.parametrize(
    "sid, sdd",
    [
        (200.0, 400.0),  # grid between source and detector, strong perspective
        (40.0, 300.0),  # source inside the grid: voxel cubes straddle the source plane
        (150.0, 190.0),  # detector plane cuts the grid: voxels beyond it get nothing
    ],
)
def test_candidate_box_keeps_every_nonzero_weight(sid, sdd):
    affine = np.eye(4)
    affine[:3, :3] = np.array([[9.0, 2.0, 0.0], [-1.5, 10.0, 1.0], [0.0, -2.0, 11.0]])
    affine[:3, 3] = -affine[:3, :3] @ [5.5, 9.5, 4.5]  # grid centre at the isocenter
    grid = Volume(np.zeros((10, 20, 12), np.float32), affine)
    view = carm_view(
        20, 15, source_to_isocenter_mm=sid, source_to_detector_mm=sdd, pixel_mm=2.0, shape=(64, 64)
    )
    vox = np.stack(np.meshgrid(range(12), range(20), range(10), indexing="ij"), -1).reshape(-1, 3)
    value = np.random.default_rng(1).uniform(0.5, 2.0, len(vox))
    tissue = CoarseGrid(grid, vox.astype(np.int64), value, np.linalg.inv(affine))
    fp = footprints(tissue, view, 8)
    dense = np.zeros((len(vox), 64))
    for n in range(len(vox)):
        sl = slice(fp.start[n], fp.start[n] + fp.count[n])
        assert np.all(np.diff(fp.patch[sl]) > 0) and np.all(fp.weight[sl] > 0)
        dense[n, fp.patch[sl]] = fp.weight[sl]
    expected = value[:, None] * _dense_weights(grid, view, 8, vox)
    assert (expected > 0).sum() > 300  # the case is not trivially empty
    np.testing.assert_allclose(dense, expected, rtol=1e-12, atol=1e-12)
