"""The coarse grid: factors from the iso patch width, block means, affine."""

import numpy as np
import pytest

from drrgen.correspondence.coarse import coarse_factors, coarse_volume, iso_patch_width_mm
from drrgen.geometry import carm_view
from drrgen.volume.volume import Volume


def _reference_block_mean(hu, f, hu_air):
    """Plain numpy block mean of max(0, 1 + HU/1000) with air below hu_air set to 0."""
    mu = np.where(hu >= hu_air, np.maximum(0.0, 1.0 + hu.astype(np.float64) / 1000.0), 0.0)
    fi, fj, fk = f
    nk, nj, ni = hu.shape
    out = np.zeros((-(-nk // fk), -(-nj // fj), -(-ni // fi)))
    for kc in range(out.shape[0]):
        for jc in range(out.shape[1]):
            for ic in range(out.shape[2]):
                block = mu[
                    kc * fk : (kc + 1) * fk, jc * fj : (jc + 1) * fj, ic * fi : (ic + 1) * fi
                ]
                out[kc, jc, ic] = block.mean()
    return out


def test_block_mean_matches_numpy_with_partial_blocks():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 2000, size=(11, 9, 13)).astype(np.float32)
    vol = Volume(hu, np.eye(4))
    grid = coarse_volume(vol, (4, 3, 5), hu_air=-300.0)
    assert grid.data.shape == (3, 3, 4)
    np.testing.assert_allclose(grid.data, _reference_block_mean(hu, (4, 3, 5), -300.0), rtol=1e-6)


def test_block_mean_of_strided_crop_equals_contiguous_copy():
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1000, 2000, size=(20, 18, 16)).astype(np.float32)
    crop = Volume(hu, np.eye(4)).crop((3, 2, 1), (15, 17, 19))
    assert not crop.data.flags.c_contiguous
    copy = Volume(np.ascontiguousarray(crop.data), crop.affine)
    a = coarse_volume(crop, (3, 4, 5)).data
    b = coarse_volume(copy, (3, 4, 5)).data
    np.testing.assert_array_equal(a, b)


def test_coarse_voxel_centre_is_block_centre_on_rotated_grid():
    theta = np.deg2rad(30)
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 1.1, 2.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    vol = Volume(np.zeros((8, 9, 10), np.float32), affine)
    f = np.array([3, 2, 4])
    grid = coarse_volume(vol, f)
    np.testing.assert_allclose(grid.spacing, vol.spacing * f)
    # Coarse voxel (1, 2, 0) covers fine i in 3..5, j in 4..5, k in 0..3.
    fine = np.stack(np.meshgrid(range(3, 6), range(4, 6), range(0, 4), indexing="ij"), -1)
    centre = vol.index_to_world(fine.reshape(-1, 3)).mean(0)
    np.testing.assert_allclose(grid.index_to_world([1, 2, 0]), centre, atol=1e-9)


def test_factors_follow_the_iso_patch_width():
    # Magnification 2 and 1 mm pixels: a 16-pixel patch is 8 mm wide at the isocenter.
    affine = np.diag([0.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = -19.5 * np.diag(affine)[:3]  # grid centre at the isocenter (origin)
    vol = Volume(np.zeros((40, 40, 40), np.float32), affine)
    views = [
        carm_view(a, 0, source_to_isocenter_mm=500, source_to_detector_mm=1000, shape=(64, 64))
        for a in (0, 90)
    ]
    assert iso_patch_width_mm(vol, views, 16) == pytest.approx(8.0)
    np.testing.assert_array_equal(coarse_factors(vol, views, 16, fraction=1.0), [16, 8, 4])
    np.testing.assert_array_equal(coarse_factors(vol, views, 16, fraction=0.75), [12, 6, 3])


def test_volume_behind_a_source_is_an_error_naming_the_volume():
    vol = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4), "ct.nii.gz")
    # Isocenter 2 m in front of the volume along the beam: the volume is behind the source.
    view = carm_view(0, 0, source_to_isocenter_mm=1000, isocenter=(0, 2000, 0), shape=(32, 32))
    with pytest.raises(ValueError, match="ct.nii.gz.*behind"):
        coarse_factors(vol, [view, view], 16)
