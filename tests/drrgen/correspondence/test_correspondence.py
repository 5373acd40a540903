"""`correspondence`: pair order, symmetry, known answers and the brute-force reference."""

import numpy as np
import pytest

from drrgen.correspondence import correspondence
from drrgen.correspondence.coarse import (
    coarse_cells,
    coarse_volume,
    iso_patch_width_mm,
    sigmoid_density,
)
from drrgen.correspondence.footprint import sub_ray_view
from drrgen.correspondence.ground_truth import PATCH_FRACTION, SUPERSAMPLE
from drrgen.geometry import carm_view
from drrgen.projector import project
from drrgen.volume.volume import Volume


def _rotated_affine(spacing, centre, deg=25.0):
    """(4, 4) affine of a grid rotated about z and x, anisotropic, voxel (0,0,0) at `centre`."""
    a, b = np.deg2rad(deg), np.deg2rad(0.6 * deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = centre
    return affine


def _blob_volume(shape=(30, 28, 26), seed=0):
    """A tissue ellipsoid with a denser, noisy core, on a rotated anisotropic grid (HU)."""
    nk, nj, ni = shape
    k, j, i = np.mgrid[:nk, :nj, :ni].astype(np.float32)
    r2 = ((i - ni / 2) / (0.4 * ni)) ** 2 + ((j - nj / 2) / (0.35 * nj)) ** 2
    r2 = r2 + ((k - nk / 2) / (0.45 * nk)) ** 2
    rng = np.random.default_rng(seed)
    hu = np.where(r2 < 1, 40.0, -1000.0) + np.where(r2 < 0.3, 900.0, 0.0)
    hu = (hu + rng.normal(0, 30, shape) * (r2 < 1)).astype(np.float32)
    affine = _rotated_affine([2.0, 2.4, 2.8], [0, 0, 0])
    affine[:3, 3] -= affine[:3, :3] @ ((np.array([ni, nj, nk]) - 1) / 2)  # centre at origin
    return Volume(hu, affine, "blob")


def _views(angles, shape=(64, 64), **kw):
    kw = dict(source_to_isocenter_mm=500, source_to_detector_mm=800, pixel_mm=1.5) | kw
    return [carm_view(p, s, shape=shape, **kw) for p, s in angles]


def test_shape_pair_order_and_transpose():
    vol = _blob_volume()
    v0, v1, v2 = _views([(10, 5), (80, -10), (150, 20)])
    c = correspondence(vol, [v0, v1, v2], patch=8)
    assert c.shape == (3, 64, 64) and c.dtype == np.float32
    # paper (default): not divided; the dense core's density (~0.99) is the peak of each pair.
    assert np.all((c >= 0) & (c <= 1)) and np.all(c.max(axis=(1, 2)) > 0.9)
    peak = correspondence(vol, [v0, v1, v2], patch=8, definition="peak")
    assert np.allclose(peak.max(axis=(1, 2)), 1.0)
    np.testing.assert_array_equal(peak[1].T, correspondence(vol, [v2, v0], 8, definition="peak")[0])
    # Same SID/SDD/pixels for every view: the coarse grid does not depend on the subset.
    np.testing.assert_array_equal(c[0], correspondence(vol, [v0, v1], patch=8)[0])
    np.testing.assert_array_equal(c[1], correspondence(vol, [v0, v2], patch=8)[0])
    np.testing.assert_array_equal(c[2], correspondence(vol, [v1, v2], patch=8)[0])
    np.testing.assert_array_equal(c[1].T, correspondence(vol, [v2, v0], patch=8)[0])
    assert not np.array_equal(c[0], c[1])


def test_thread_count_does_not_change_the_result():
    vol = _blob_volume(seed=3)
    views = _views([(0, 0), (70, 10)])
    one = correspondence(vol, views, patch=8, threads=1)
    two = correspondence(vol, views, patch=8, threads=2)
    np.testing.assert_array_equal(one, two)


def test_identical_views_put_the_mass_on_the_diagonal():
    vol = _blob_volume(seed=1)
    view = _views([(20, 10)])[0]
    c = correspondence(vol, [view, view], patch=8)[0]
    np.testing.assert_array_equal(c, c.T)
    rows = np.flatnonzero(c.max(axis=1) > 0)
    assert len(rows) > 10
    # w_a w_b <= max(w_a^2, w_b^2): no entry beats both diagonal entries of its row and column.
    assert np.all(c <= np.maximum(np.diag(c)[:, None], np.diag(c)[None, :]) + 1e-7)
    # The peak of every row sits on the diagonal or on a neighbouring patch.
    peak = np.argmax(c[rows], axis=1)
    assert np.all(np.abs(peak // 8 - rows // 8) <= 1) and np.all(np.abs(peak % 8 - rows % 8) <= 1)
    assert np.mean(peak == rows) > 0.8
    assert np.diag(c).sum() > 0.3 * c.sum(axis=1)[rows].sum() / 3


def _centred_volume(data, spacing, source):
    """A volume on a rotated anisotropic grid whose centre is the origin."""
    n_ijk = np.array(data.shape[::-1])
    affine = _rotated_affine(spacing, [0, 0, 0], deg=15)
    affine[:3, 3] -= affine[:3, :3] @ ((n_ijk - 1) / 2)
    return Volume(data, affine, source)


def _single_voxel_ct(views, patch, fraction, coarse_index, shape=(24, 24, 24), block=(4, 3, 6)):
    """An all-air CT except one dense block that is exactly one coarse voxel; its centre (mm).

    The spacing makes the coarse cells whole blocks of `block` (i, j, k) fine voxels.
    """
    air = np.full(shape, -1000.0, np.float32)
    # The coarse cell width depends on the grid centre only (the origin here).
    width = fraction * iso_patch_width_mm(_centred_volume(air, [1, 1, 1], ""), views, patch)
    f = np.array(block)
    vol = _centred_volume(air, width / f, "one voxel")
    cells = coarse_cells(vol, fraction * iso_patch_width_mm(vol, views, patch))
    np.testing.assert_array_equal(cells * f, shape[::-1])
    lo = np.asarray(coarse_index) * f
    vol.data[lo[2] : lo[2] + f[2], lo[1] : lo[1] + f[1], lo[0] : lo[0] + f[0]] = 1500.0
    centre = vol.index_to_world(lo + (f - 1) / 2.0)
    assert np.count_nonzero(coarse_volume(vol, cells).data) == 1
    return vol, centre


@pytest.mark.parametrize(
    "supersample, fraction, atol, indices",
    [
        # Centre rays, cells of 3/4 patch: the tent spreads over patches.
        (1, 0.75, 0.3, [(1, 1, 1), (2, 1, 1), (2, 3, 2)]),
        # Small cells: mostly the patch the voxel projects into; moves of about a patch.
        (SUPERSAMPLE, PATCH_FRACTION, 0.5, [(0, 0, 0), (5, 1, 1), (2, 7, 3)]),
    ],
)
def test_single_dense_voxel_gives_one_block_that_follows_the_projection(
    supersample, fraction, atol, indices
):
    views = _views([(15, 8), (100, -12)], shape=(96, 96))
    peaks = []
    for index in indices:
        vol, centre = _single_voxel_ct(views, 8, fraction, index)
        c = correspondence(
            vol, views, patch=8, supersample=supersample, fraction=fraction, definition="peak"
        )[0]
        paper = correspondence(vol, views, patch=8, supersample=supersample, fraction=fraction)[0]
        # The paper's definition: the same block, scaled to the voxel's density at its peak.
        density = float(sigmoid_density(1500.0))
        np.testing.assert_allclose(paper, density * c, rtol=1e-5, atol=1e-7)
        assert paper.max() == pytest.approx(density, rel=1e-5)
        rows, cols = np.flatnonzero(c.max(1)), np.flatnonzero(c.max(0))
        # One rank-1 block, within a 3x3 patch neighbourhood in each view.
        np.testing.assert_allclose(c, np.outer(c.max(1), c.max(0)), rtol=1e-5, atol=1e-7)
        for ids, view in ((rows, views[0]), (cols, views[1])):
            assert np.ptp(ids // 12) <= 2 and np.ptp(ids % 12) <= 2
            # Weighted centre of the footprint vs the pinhole projection of the blob centre,
            # both in patch units (patch (R, C) centred on (R, C)).
            w = c.max(1) if ids is rows else c.max(0)
            rc = view.downsample(8).project_points(centre)
            centroid = np.array(
                [np.sum(w * (np.arange(144) // 12)), np.sum(w * (np.arange(144) % 12))]
            )
            np.testing.assert_allclose(centroid / w.sum(), rc, atol=atol)
            # The patch containing the projected centre is part of the block.
            home = int(np.floor(rc[0] + 0.5)) * 12 + int(np.floor(rc[1] + 0.5))
            assert w[home] > 0
            if supersample > 1:  # and carries its peak
                assert w[home] == w.max()
        peaks.append((np.argmax(c.max(1)), np.argmax(c.max(0))))
    assert len(set(peaks)) == 3  # the block moved with the voxel


def _brute_force(
    hu_volume, views, patch, supersample, fraction, definition, air_threshold_hu=-300.0
):
    """The definition, literally: project each one-voxel volume with `project` onto the
    sub-ray detector (pitch patch / s pixels), average-pool s x s to patches; ``peak``: outer
    products, max, normalise; ``paper``: each projection divided by its maximum, outer product
    times the voxel's density, max."""
    s = supersample
    paper = definition == "paper"
    width = fraction * iso_patch_width_mm(hu_volume, views, patch)
    cells = coarse_cells(hu_volume, width)
    grid = coarse_volume(hu_volume, cells, air_threshold_hu, "sigmoid" if paper else "attenuation")
    # s dividing the patch: the plain downsampled detector; otherwise the sub-ray detector.
    fine = [
        v.downsample(patch // s) if patch % s == 0 else sub_ray_view(v, patch, s) for v in views
    ]
    hp, wp = views[0].shape[0] // patch, views[0].shape[1] // patch
    pairs = [(i, j) for i in range(len(views)) for j in range(i + 1, len(views))]
    best = np.zeros((len(pairs), hp * wp, hp * wp))
    for idx in np.argwhere(grid.data > 0):
        one = np.zeros_like(grid.data)
        one[tuple(idx)] = grid.data[tuple(idx)]
        one_voxel = Volume(one, grid.affine)
        p = [
            project(one_voxel, v).astype(np.float64).reshape(hp, s, wp, s).mean(axis=(1, 3)).ravel()
            for v in fine
        ]
        if paper:
            p = [x / x.max() if x.max() > 0 else x for x in p]
        scale = grid.data[tuple(idx)] if paper else 1.0
        for q, (i, j) in enumerate(pairs):
            best[q] = np.maximum(best[q], scale * np.outer(p[i], p[j]))
    return best if paper else best / best.max(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("definition", ["paper", "peak"])
@pytest.mark.parametrize(
    "seed, supersample, fraction",
    [(0, 1, 0.75), (1, 2, 0.35), (2, 3, PATCH_FRACTION), (3, 4, 0.3)],
)
def test_agrees_with_brute_force_projection_of_one_voxel_volumes(
    seed, supersample, fraction, definition
):
    rng = np.random.default_rng(seed)
    vol = _blob_volume(shape=(16, 18, 14), seed=seed)
    angles = [(rng.uniform(0, 360), rng.uniform(-25, 25)) for _ in range(3)]
    views = _views(angles, shape=(48, 48), isocenter=rng.normal(0, 5, 3))
    fast = correspondence(
        vol, views, patch=8, supersample=supersample, fraction=fraction, definition=definition
    )
    slow = _brute_force(vol, views, 8, supersample, fraction, definition)
    assert np.count_nonzero(slow) > 100
    # Float32 precision: the projector steps its rays in float32, so entries at the very
    # edge of a tent (below 1e-5) may be zero on one side only.
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert np.array_equal(fast > 1e-4, slow > 1e-4)


def _paper_voxels(views, patch, blocks, shape=(24, 24, 24), block=(4, 3, 6)):
    """An air CT with whole coarse voxels set to HU values: {coarse index (i, j, k): HU}."""
    vol, _ = _single_voxel_ct(views, patch, PATCH_FRACTION, (0, 0, 0), shape, block)
    vol.data[:] = -1000.0
    f = np.array(block)
    for index, hu in blocks.items():
        lo = np.asarray(index) * f
        vol.data[lo[2] : lo[2] + f[2], lo[1] : lo[1] + f[1], lo[0] : lo[0] + f[0]] = hu
    return vol


@pytest.mark.parametrize("hu", [40.0, 1500.0])
def test_paper_one_voxel_gives_exactly_its_density_at_its_own_patch_pair(hu):
    views = _views([(15, 8), (100, -12)], shape=(96, 96))
    vol = _paper_voxels(views, 8, {(3, 4, 2): hu})
    c = correspondence(vol, views, patch=8)[0]
    density = float(sigmoid_density(hu))  # soft tissue ~0.73, bone ~1
    assert c.max() == pytest.approx(density, rel=1e-6)
    # Its own patch pair (where the centre projects in each view) carries the peak.
    centre = vol.index_to_world(np.array([3, 4, 2]) * [4, 3, 6] + (np.array([4, 3, 6]) - 1) / 2)
    home = [
        int(np.floor(rc[0] + 0.5)) * 12 + int(np.floor(rc[1] + 0.5))
        for rc in (v.downsample(8).project_points(centre[None])[0] for v in views)
    ]
    assert c[home[0], home[1]] == pytest.approx(density, rel=1e-6)
    assert c[home[0], home[1]] > 0.2  # a positive at the paper's threshold, soft tissue too


def test_paper_two_voxels_give_the_max_not_the_sum():
    views = _views([(15, 8), (15, 8)], shape=(96, 96))  # the same view twice
    soft, bone = (3, 3, 2), (4, 3, 2)  # neighbouring coarse voxels: their footprints overlap
    one = correspondence(_paper_voxels(views, 8, {soft: 40.0}), views, patch=8)[0]
    other = correspondence(_paper_voxels(views, 8, {bone: 1500.0}), views, patch=8)[0]
    two = correspondence(_paper_voxels(views, 8, {soft: 40.0, bone: 1500.0}), views, 8)[0]
    shared = (one > 0) & (other > 0)
    assert shared.sum() > 0
    np.testing.assert_array_equal(two, np.maximum(one, other))
    assert np.all(two[shared] < one[shared] + other[shared])
    assert two.max() == pytest.approx(float(sigmoid_density(1500.0)), rel=1e-6)


def test_paper_soft_tissue_slab_is_positive_over_its_whole_shared_support():
    data = np.full((30, 30, 30), -1000.0, np.float32)
    data[10:20] = 40.0  # a slab of soft tissue 20 mm thick along z, filling x and y ...
    data[13:17, 13:17, :] = 1500.0  # ... around a bone bar along x
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -29.0  # centred on the origin
    vol = Volume(data, affine, "slab")
    views = _views([(0, 0), (90, 0)], shape=(64, 64))
    c = correspondence(vol, views, patch=8)[0]
    old = correspondence(vol, views, patch=8, definition="peak")[0]
    support = c > 0
    assert support.sum() > 100 and np.array_equal(support, old > 0)
    assert c.max() == pytest.approx(float(sigmoid_density(1500.0)), rel=1e-3)
    # The patch pairs the slab is seen in by both views are positives at 0.2 (soft tissue's
    # density 0.72, bone's 1), apart from patches that only graze its faces; with the old
    # definition, divided by the bone-to-bone peak, far fewer are.
    assert (c[support] > 0.2).mean() > 0.7
    assert (old[support] > 0.2).mean() < 0.5 * (c[support] > 0.2).mean()


@pytest.mark.parametrize("definition", ["paper", "peak"])
def test_all_air_gives_zeros(definition):
    vol = Volume(np.full((10, 10, 10), -1000.0, np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    views = _views([(0, 0), (90, 0)], shape=(32, 32))
    c = correspondence(vol, views, patch=16, definition=definition)
    assert c.shape == (1, 4, 4) and not c.any()


@pytest.mark.parametrize(
    "views, kwargs, message",
    [
        (_views([(0, 0)]), {}, "at least 2 views"),
        (_views([(0, 0), (90, 0)], shape=(60, 64)), {}, "not divisible"),
        (_views([(0, 0)]) + _views([(90, 0)], shape=(32, 32)), {}, "one detector shape"),
        (_views([(0, 0), (90, 0)]), {"supersample": 0}, "supersample must be an integer >= 1"),
        (_views([(0, 0), (90, 0)]), {"supersample": 1.5}, "supersample must be an integer"),
        (_views([(0, 0), (90, 0)]), {"fraction": 0.0}, "fraction must be > 0"),
        (_views([(0, 0), (90, 0)]), {"definition": "max"}, "unknown correspondence definition"),
    ],
)
def test_bad_arguments_raise_naming_the_volume(views, kwargs, message):
    vol = _blob_volume(shape=(8, 8, 8))
    with pytest.raises(ValueError, match=message) as err:
        correspondence(vol, views, patch=8, **kwargs)
    assert "blob" in str(err.value)
