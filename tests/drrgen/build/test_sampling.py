import numpy as np
import pytest
from helpers import tiny_ct

from drrgen.build import BuildConfig, ClusterOptions, build
from drrgen.build.sampling import (
    POSE_FIELDS,
    TissueIndex,
    block_rng,
    box_corners,
    draw_pose,
    in_front,
    sample_block,
)
from drrgen.errors import CTReadError
from drrgen.geometry.poses import SamplingConfig
from drrgen.volume import Volume, write_ct


def _same(a, b):
    return all(
        np.array_equal(x.start, y.start)
        and np.array_equal(x.stop, y.stop)
        and np.array_equal(x.pose, y.pose)
        and all(
            np.array_equal(u.as_vector(), w.as_vector())
            for u, w in zip(x.views, y.views, strict=True)
        )
        for x, y in zip(a, b, strict=True)
    )


def test_draws_depend_only_on_seed_volume_and_block():
    vol, cfg = tiny_ct(), SamplingConfig()
    a = sample_block(1, 2, 3, 4, vol, 3, 32, cfg)
    assert _same(a, sample_block(1, 2, 3, 4, vol, 3, 32, cfg))
    for other in [(0, 2, 3), (1, 0, 3), (1, 2, 0)]:
        assert not _same(a, sample_block(*other, 4, vol, 3, 32, cfg))


def test_primary_angles_follow_the_standard_projection_probabilities():
    rng, cfg = block_rng(0, 0, 0), SamplingConfig(primary_sigma_deg=5.0)
    angles = np.array([draw_pose(rng, cfg)["primary_deg"] for _ in range(4000)])
    nearest = np.rint(angles / 90.0).astype(int) % 4
    freq = np.bincount(nearest, minlength=4) / len(angles)
    np.testing.assert_allclose(freq, [0.4, 0.3, 0.2, 0.1], atol=0.03)
    tilts = np.array([draw_pose(rng, cfg)["secondary_deg"] for _ in range(2000)])
    assert 12 < tilts.std() < 17 and np.abs(tilts).max() <= cfg.secondary_max_deg


def test_crops_distances_isocenter_and_fill():
    vol = tiny_ct()
    cfg = SamplingConfig()
    size = 48
    for smp in sample_block(0, 0, 0, 20, vol, 2, size, cfg):
        extent = smp.stop - smp.start
        frac = extent / np.array(vol.shape_ijk)
        assert np.all(smp.start >= 0) and np.all(smp.stop <= vol.shape_ijk)
        assert np.all(frac >= cfg.crop_fraction[0] - 0.05) and np.all(frac <= 1.0)
        iso = vol.index_to_world((smp.start + smp.stop - 1) / 2.0)
        corners = box_corners(vol, smp.start, smp.stop)
        for view, pose in zip(smp.views, smp.pose, strict=True):
            p = dict(zip(POSE_FIELDS, pose, strict=True))
            # the central ray (source -> detector centre) passes through the crop centre
            ray = view.detector_center - view.source
            off = np.cross(iso - view.source, ray) / np.linalg.norm(ray)
            assert np.linalg.norm(off) < 1e-6
            assert np.isclose(np.linalg.norm(iso - view.source), p["source_to_isocenter_mm"])
            assert np.isclose(np.linalg.norm(ray), p["source_to_detector_mm"])
            assert 1000 <= p["source_to_isocenter_mm"] <= 1100
            assert 800 <= p["source_to_detector_mm"] - p["source_to_isocenter_mm"] <= 1200
            # the projected crop fits the central `fill` of the detector and touches its edge
            # (its farthest corner from the centre sits at fill / 2 of the detector width)
            rc = view.project_points(corners)
            reach = 2 * np.abs(rc - (size - 1) / 2).max() / size
            assert cfg.fill_fraction[0] - 1e-6 <= reach <= cfg.fill_fraction[1] + 1e-6
            assert np.all(rc >= -0.5) and np.all(rc <= size - 0.5)  # never off the detector
            span = np.ptp(rc, axis=0).max() / size
            assert span <= reach + 1e-9


def test_tissue_index_is_a_lower_bound_and_exact_on_cell_boundaries():
    vol = tiny_ct()
    idx = TissueIndex.build(vol, -300.0, cell=4)
    tissue = vol.data > -300.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        start = rng.integers(0, 16, size=3)
        stop = start + rng.integers(1, 16, size=3)
        (i0, j0, k0), (i1, j1, k1) = start, stop
        assert idx.lower_bound(start, stop) <= tissue[k0:k1, j0:j1, i0:i1].sum()
    assert idx.lower_bound((4, 8, 4), (16, 24, 32)) == tissue[4:32, 8:24, 4:16].sum()


def test_crops_of_pure_air_are_redrawn():
    data = np.full((40, 40, 40), -1000.0, np.float32)
    data[:16] = 500.0  # tissue only in the lower 40 % of k
    vol = Volume(data, np.eye(4))
    cfg = SamplingConfig(crop_fraction=(0.2, 0.3))
    idx = TissueIndex.build(vol, -300.0)
    with_index = sample_block(0, 0, 0, 20, vol, 2, 32, cfg, idx)
    assert all(idx.lower_bound(s.start, s.stop) > 0 for s in with_index)
    without = sample_block(0, 0, 0, 20, vol, 2, 32, cfg)
    assert any(idx.lower_bound(s.start, s.stop) == 0 for s in without)


@pytest.mark.parametrize("views", [2, 4])
def test_pose_rows_match_views(views):
    smp = sample_block(0, 0, 0, 1, tiny_ct(), views, 32, SamplingConfig())[0]
    assert smp.pose.shape == (views, len(POSE_FIELDS)) and len(smp.views) == views
    for view, row in zip(smp.views, smp.pose, strict=True):
        assert np.isclose(np.linalg.norm(view.u), row[POSE_FIELDS.index("pixel_mm")])


def _coarse(spacing_mm: float, n: int = 64) -> Volume:
    """`tiny_ct` resampled on paper to `spacing_mm` voxels: n^3 voxels, n * spacing mm wide."""
    vol = tiny_ct(0, (n, n, n))
    affine = vol.affine.copy()
    affine[:3, :3] *= spacing_mm / np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(vol.data, affine, f"coarse{spacing_mm:g}")


def test_crops_reaching_behind_a_source_are_redrawn_or_the_volume_refused():
    cfg = SamplingConfig()
    vol = _coarse(30.0)  # 1.9 m wide: some full crops reach past a 1 m source distance
    samples = [s for b in range(4) for s in sample_block(0, 0, b, 4, vol, 2, 32, cfg)]
    for s in samples:
        corners = box_corners(vol, s.start, s.stop)
        assert all(in_front(v, corners) for v in s.views) and np.isfinite(s.pose).all()
    with pytest.raises(CTReadError, match=r"too large for the C-arm: 2880 x 2880 x 2880 mm"):
        sample_block(0, 0, 0, 4, _coarse(45.0), 2, 32, cfg)


def test_a_30_mm_ct_builds_and_an_impossible_one_fails_with_the_reason(tmp_path):
    write_ct(_coarse(30.0), tmp_path / "cts" / "ct30.nii.gz")
    write_ct(_coarse(45.0), tmp_path / "cts" / "ct45.nii.gz")
    cfg = BuildConfig(samples_per_ct=4, block=2, size=32, patch=8)  # block 1 redraws a crop
    summary = build(
        tmp_path / "cts", tmp_path / "s.zarr", cfg, ClusterOptions(workers=0), progress=False
    )
    assert [f["path"] for f in summary.failed] == ["ct45.nii.gz"]
    assert summary.failed[0]["reason"].startswith("too large for the C-arm")
    assert summary.written == 4  # ct30's samples, through the coarse correspondence grid
