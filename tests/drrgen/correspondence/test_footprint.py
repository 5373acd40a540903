"""Sparse Joseph footprints: the pinhole map and the candidate box."""

import numpy as np
import pytest

from drrgen.correspondence.coarse import CoarseGrid
from drrgen.correspondence.footprint import footprints, pinhole, pinhole_matrix, sub_ray_view
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


def _dense_weights(grid, detector, vox):
    """Joseph weight of every voxel on the ray to every pixel centre of `detector` (a view),
    straight from the definition (numpy): (n_vox, H W)."""
    s = grid.world_to_index(detector.source)
    d = grid.world_to_index(detector.pixel_centers().reshape(-1, 3)) - s
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
    for sub in (1, 2, 3):
        dense = _dense(footprints(tissue, view, 8, sub), len(vox), 64)
        # The definition: the mean over each patch's sub x sub sub-rays of the Joseph weight.
        fine = _dense_weights(grid, sub_ray_view(view, 8, sub), vox).reshape(-1, 8, sub, 8, sub)
        expected = value[:, None] * fine.mean(axis=(2, 4)).reshape(len(vox), 64)
        assert (expected > 0).sum() > 300  # the case is not trivially empty
        np.testing.assert_allclose(dense, expected, rtol=1e-12, atol=1e-12)


def _dense(fp, n_vox, n_patch):
    """(n_vox, n_patch) array of sparse footprints, checking their layout on the way."""
    dense = np.zeros((n_vox, n_patch))
    for n in range(n_vox):
        sl = slice(fp.start[n], fp.start[n] + fp.count[n])
        assert np.all(np.diff(fp.patch[sl]) > 0) and np.all(fp.weight[sl] > 0)
        dense[n, fp.patch[sl]] = fp.weight[sl]
    return dense


def test_sub_ray_detector_spreads_sub_rays_uniformly_over_each_patch():
    view = carm_view(30, 10, pixel_mm=0.9, shape=(48, 64))
    for sub in (1, 2, 3, 4, 5):
        fine = sub_ray_view(view, 16, sub).pixel_centers()  # (3 sub, 4 sub, 3) mm
        # Sub-pixel (R sub + q, C sub + t) sits at ((q + 1/2) / sub - 1/2) patches from the
        # centre of patch (R, C) along v, likewise along u.
        patch_centres = view.downsample(16).pixel_centers()
        offsets = (np.arange(sub) + 0.5) / sub - 0.5
        expected = (
            patch_centres[:, None, :, None, :]
            + offsets[None, :, None, None, None] * 16 * view.v
            + offsets[None, None, None, :, None] * 16 * view.u
        )
        np.testing.assert_allclose(fine, expected.reshape(fine.shape), atol=1e-9)
    # s = 1 is the patch detector itself; s dividing the patch is a plain downsampling.
    np.testing.assert_array_equal(
        sub_ray_view(view, 16, 1).as_vector(), view.downsample(16).as_vector()
    )
    np.testing.assert_array_equal(
        sub_ray_view(view, 16, 4).as_vector(), view.downsample(4).as_vector()
    )
    assert sub_ray_view(view, 16, 3).shape == (9, 12)


def _centre_ray_weights(s, det, du, dv, h, w, lin, vox, value):
    """(n_vox, h w) Joseph weights on the rays to the pixel centres, in the floating-point
    operation order of the centre-ray kernel (before supersampling existed), in numpy."""
    out = np.zeros((len(vox), h * w))
    for r in range(h):
        for c in range(w):
            d = det + (c - (w - 1) / 2.0) * du + (r - (h - 1) / 2.0) * dv - s
            m = int(np.argmax(np.abs(d)))
            slope = d / d[m]
            origin = s - s[m] * slope
            mm = lin[:, 0] * d[0] + lin[:, 1] * d[1] + lin[:, 2] * d[2]
            step = np.sqrt(0.0 + mm[0] * mm[0] + mm[1] * mm[1] + mm[2] * mm[2]) / abs(d[m])
            vm = vox[:, m].astype(np.float64)
            wgt = step * value
            for a in range(3):
                wgt = wgt * np.maximum(0.0, 1.0 - np.abs(origin[a] + vm * slope[a] - vox[:, a]))
            inside = (vm >= min(s[m], s[m] + d[m])) & (vm <= max(s[m], s[m] + d[m]))
            out[:, r * w + c] = np.where(inside, wgt, 0.0)
    return out


def test_one_sub_ray_per_patch_is_the_centre_ray_footprint():
    # s = 1 gives the patch-centre Joseph weight of the centre-ray kernel, bit for bit.
    affine = np.diag([6.0, 7.0, 8.0, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[1, 0.1, 0], [0, 1, 0.2], [0.1, 0, 1]])
    affine[:3, 3] = -affine[:3, :3] @ [4.5, 4.5, 4.5]
    grid = Volume(np.zeros((10, 10, 10), np.float32), affine)
    view = carm_view(40, -20, source_to_isocenter_mm=300, source_to_detector_mm=600, shape=(96, 96))
    vox = np.stack(np.meshgrid(range(10), range(10), range(10), indexing="ij"), -1).reshape(-1, 3)
    value = np.random.default_rng(3).uniform(0.2, 2.0, len(vox))
    inv = np.linalg.inv(affine)
    tissue = CoarseGrid(grid, vox.astype(np.int64), value, inv)
    dense = _dense(footprints(tissue, view, 16, 1), len(vox), 36)
    patches = view.downsample(16)
    s, det = (inv[:3, :3] @ p + inv[:3, 3] for p in (patches.source, patches.detector_center))
    du, dv = inv[:3, :3] @ patches.u, inv[:3, :3] @ patches.v
    expected = _centre_ray_weights(s, det, du, dv, 6, 6, affine[:3, :3], vox, value)
    assert (expected > 0).sum() > 100
    np.testing.assert_array_equal(dense, expected)
