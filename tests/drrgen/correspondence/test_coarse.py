"""The coarse grid: cells from the iso patch width, area means, affine."""

import numpy as np
import pytest

from drrgen.correspondence.coarse import (
    coarse_cells,
    coarse_grid,
    coarse_volume,
    iso_patch_width_mm,
    iso_patch_widths_mm,
)
from drrgen.geometry import carm_view
from drrgen.volume.volume import Volume


def _overlap_matrix(n, cells):
    """(cells, n) area weights, straight from the definition: overlap of [c r, (c + 1) r] and
    [x, x + 1] (both shifted by -1/2) divided by r = n / cells."""
    r = n / cells
    lo = np.arange(cells)[:, None] * r
    x = np.arange(n)[None, :]
    return np.clip(np.minimum(x + 1, lo + r) - np.maximum(x, lo), 0, None) / r


def _reference_area_mean(hu, cells, air_threshold_hu):
    """Plain numpy area mean of max(0, 1 + HU/1000) with air below air_threshold_hu set to 0."""
    mu = np.where(
        hu >= air_threshold_hu, np.maximum(0.0, 1.0 + hu.astype(np.float64) / 1000.0), 0.0
    )
    for axis, n_cells in enumerate(cells[::-1]):  # data axes are (k, j, i)
        weights = _overlap_matrix(hu.shape[axis], n_cells)
        mu = np.moveaxis(np.tensordot(weights, mu, axes=([1], [axis])), 0, axis)
    return mu


@pytest.mark.parametrize(
    "cells",
    [
        (4, 3, 3),  # partial overlaps on every axis (13/4, 9/3, 11/3 fine voxels per cell)
        (13, 9, 11),  # one fine voxel per cell: the grid itself
        (1, 1, 1),  # the whole volume in one cell
        (20, 14, 30),  # cells smaller than the fine voxels (area upsampling)
    ],
)
def test_area_mean_matches_numpy(cells):
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 2000, size=(11, 9, 13)).astype(np.float32)
    grid = coarse_volume(Volume(hu, np.eye(4)), cells, air_threshold_hu=-300.0)
    assert grid.data.shape == cells[::-1]
    np.testing.assert_allclose(grid.data, _reference_area_mean(hu, cells, -300.0), rtol=1e-5)


def test_area_mean_of_integer_blocks_is_the_block_mean():
    rng = np.random.default_rng(3)
    hu = rng.uniform(-1000, 2000, size=(8, 9, 10)).astype(np.float32)
    grid = coarse_volume(
        Volume(hu, np.eye(4)), (5, 3, 2), air_threshold_hu=-1000.0
    )  # 2 x 3 x 4 blocks
    mu = np.maximum(0.0, 1.0 + hu.astype(np.float64) / 1000.0)
    blocks = mu.reshape(2, 4, 3, 3, 5, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(grid.data, blocks, rtol=1e-6)


def test_mass_is_conserved():
    # Cells tile the volume exactly (no partial cells): the total attenuation is preserved.
    rng = np.random.default_rng(4)
    hu = rng.uniform(-200, 1500, size=(17, 23, 19)).astype(np.float32)
    vol = Volume(hu, np.diag([0.7, 1.1, 2.0, 1.0]))
    grid = coarse_volume(vol, (4, 6, 5), air_threshold_hu=-1000.0)
    fine = np.maximum(0.0, 1.0 + hu.astype(np.float64) / 1000.0).sum() * np.prod(vol.spacing)
    assert grid.data.astype(np.float64).sum() * np.prod(grid.spacing) == pytest.approx(fine)


def test_area_mean_of_strided_crop_equals_contiguous_copy():
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1000, 2000, size=(20, 18, 16)).astype(np.float32)
    crop = Volume(hu, np.eye(4)).crop((3, 2, 1), (15, 17, 19))
    assert not crop.data.flags.c_contiguous
    copy = Volume(np.ascontiguousarray(crop.data), crop.affine)
    for cells in [(3, 4, 5), (5, 7, 9)]:
        a = coarse_volume(crop, cells).data
        b = coarse_volume(copy, cells).data
        np.testing.assert_array_equal(a, b)


def test_tissue_list_holds_the_nonzero_cells_in_c_order():
    rng = np.random.default_rng(5)
    hu = np.where(rng.random((12, 10, 14)) < 0.3, 200.0, -1000.0).astype(np.float32)
    grid = coarse_grid(Volume(hu, np.eye(4)), (7, 5, 6))
    kji = np.argwhere(grid.volume.data > 0)
    np.testing.assert_array_equal(grid.vox, kji[:, ::-1])
    np.testing.assert_array_equal(grid.value, grid.volume.data[tuple(kji.T)])
    assert len(grid.vox) > 10


@pytest.mark.parametrize("cells", [(3, 5, 2), (4, 3, 3)])  # whole blocks; 10/4, 9/3, 8/3
def test_coarse_voxel_centre_is_cell_centre_on_rotated_grid(cells):
    theta = np.deg2rad(30)
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 1.1, 2.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    vol = Volume(np.zeros((8, 10, 9), np.float32), affine)  # (ni, nj, nk) = (9, 10, 8)
    grid = coarse_volume(vol, cells)
    r = np.array([9, 10, 8]) / np.array(cells)
    np.testing.assert_allclose(grid.spacing, vol.spacing * r)
    # Cell (1, 2, 0) spans fine index [r c - 1/2, r (c + 1) - 1/2] on each axis.
    index = np.array([1, 2, 0])
    centre = vol.index_to_world((index + 0.5) * r - 0.5)
    np.testing.assert_allclose(grid.index_to_world(index), centre, atol=1e-9)
    # The grid's outer faces are the fine grid's.
    corner = grid.index_to_world([-0.5, -0.5, -0.5])
    np.testing.assert_allclose(corner, vol.index_to_world([-0.5, -0.5, -0.5]), atol=1e-9)


def test_cells_follow_the_iso_patch_width():
    # Magnification 2 and 1 mm pixels: a 16-pixel patch is 8 mm wide at the isocenter.
    affine = np.diag([0.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = -19.5 * np.diag(affine)[:3]  # grid centre at the isocenter (origin)
    vol = Volume(np.zeros((40, 40, 40), np.float32), affine)  # 20 x 40 x 80 mm
    views = [
        carm_view(a, 0, source_to_isocenter_mm=500, source_to_detector_mm=1000, shape=(64, 64))
        for a in (0, 90)
    ]
    assert iso_patch_widths_mm(vol, views, 16) == pytest.approx([8.0, 8.0])
    assert iso_patch_width_mm(vol, views, 16) == pytest.approx(8.0)
    np.testing.assert_array_equal(coarse_cells(vol, 8.0), [2, 5, 10])
    np.testing.assert_array_equal(coarse_cells(vol, 0.25 * 8.0), [10, 20, 40])
    np.testing.assert_array_equal(coarse_cells(vol, 3.0), [7, 13, 27])  # rounded, >= 1
    np.testing.assert_array_equal(coarse_cells(vol, 1000.0), [1, 1, 1])


def test_volume_behind_a_source_is_an_error_naming_the_volume():
    vol = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4), "ct.nii.gz")
    # Isocenter 2 m in front of the volume along the beam: the volume is behind the source.
    view = carm_view(0, 0, source_to_isocenter_mm=1000, isocenter=(0, 2000, 0), shape=(32, 32))
    with pytest.raises(ValueError, match="ct.nii.gz.*behind"):
        iso_patch_width_mm(vol, [view, view], 16)


def test_bad_cells_raise():
    vol = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="cells must be >= 1"):
        coarse_volume(vol, (2, 0, 2))
