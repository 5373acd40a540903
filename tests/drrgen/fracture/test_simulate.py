"""The fracture simulator really breaks one bone, on the same grid, reproducibly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from drrgen import carm_view, project
from drrgen.fracture import FractureConfig, NoBoneError, bone_components, simulate_fracture
from drrgen.fracture.simulate import _plane_distance
from drrgen.phantoms import make_phantom
from drrgen.volume import Volume

DISPLACED = FractureConfig(kinds=("displaced",), kind_probs=(1.0,))
GAP = FractureConfig(kinds=("gap",), kind_probs=(1.0,), tilt_deg=(0.0, 10.0))


@pytest.fixture(scope="module")
def forearm() -> Volume:
    return make_phantom(1000, shape=(96, 96, 120), kind="forearm")


def _changed_world(intact: Volume, fractured: Volume) -> np.ndarray:
    idx = np.argwhere(np.abs(fractured.data - intact.data) > 1.0)
    return intact.index_to_world(idx[:, ::-1].astype(np.float64))


def _ap_view(point: np.ndarray, size: int = 96, fov_mm: float = 80.0):
    return carm_view(
        0.0,
        0.0,
        source_to_isocenter_mm=1000.0,
        source_to_detector_mm=1100.0,
        pixel_mm=fov_mm * 1.1 / size,
        shape=(size, size),
        isocenter=point,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_displaced_fragment_moves_one_side_of_the_cut_only(forearm, seed):
    fractured, rec = simulate_fracture(forearm, np.random.default_rng(seed), DISPLACED)
    assert fractured.data.shape == forearm.data.shape and fractured.data.dtype == np.float32
    np.testing.assert_array_equal(fractured.affine, forearm.affine)
    assert rec.kind == "displaced" and 4.0 <= np.linalg.norm(rec.translation) <= 10.5
    np.testing.assert_allclose(rec.rotation @ rec.rotation.T, np.eye(3), atol=1e-9)
    angle = np.degrees(np.arccos((np.trace(rec.rotation) - 1) / 2))
    assert 15.0 - 1e-6 <= angle <= 35.0 + 1e-6

    changed = _changed_world(forearm, fractured)
    assert len(changed) == rec.changed_voxels > 500
    side = (changed - rec.point) @ rec.normal
    # Everything that changed lies on the fragment's side, up to the motion near the cut ...
    assert side.min() > -12.0
    # ... while the other piece of the same bone exists and is untouched.
    bone = np.argwhere(forearm.data > 300)
    bone_side = (forearm.index_to_world(bone[:, ::-1].astype(float)) - rec.point) @ rec.normal
    along = np.abs((forearm.index_to_world(bone[:, ::-1].astype(float)) - rec.point) @ rec.axis)
    assert np.sum((bone_side < -10) & (along < 60)) > 200
    # The bone is moved, not created or destroyed.
    assert abs((fractured.data > 300).sum() / (forearm.data > 300).sum() - 1) < 0.05


def test_displaced_fracture_shows_in_the_drr_at_the_cut(forearm):
    fractured, rec = simulate_fracture(forearm, np.random.default_rng(3), DISPLACED)
    view = _ap_view(rec.point)
    intact_drr = project(forearm.to_mu(), view)
    diff = np.abs(project(fractured.to_mu(), view) - intact_drr)
    assert diff.max() > 0.05 * intact_drr.max()  # a visible step, not noise
    r, c = view.project_points(rec.point[None])[0]
    rows, cols = np.mgrid[: view.shape[0], : view.shape[1]]
    near = (rows - r) ** 2 + (cols - c) ** 2 < 15**2  # within ~12 mm of the cut point
    assert diff[near].max() > 0.5 * diff.max()


def test_gap_fracture_is_a_thin_break_at_the_cut(forearm):
    fractured, rec = simulate_fracture(forearm, np.random.default_rng(4), GAP)
    assert rec.kind == "gap" and 3.0 <= rec.gap_mm <= 6.0
    np.testing.assert_array_equal(rec.translation, 0.0)
    changed = _changed_world(forearm, fractured)
    assert np.all(np.abs((changed - rec.point) @ rec.normal) < rec.gap_mm / 2 + 0.01)
    assert np.all(np.linalg.norm(changed - rec.point, axis=1) < 30.0)
    assert fractured.data[np.abs(fractured.data - forearm.data) > 1].mean() < 200  # tissue now
    view = _ap_view(rec.point)
    diff = np.abs(project(fractured.to_mu(), view) - project(forearm.to_mu(), view))
    assert diff.max() > 0.02
    rows, cols = np.nonzero(diff > 0.1 * diff.max())
    r, c = view.project_points(rec.point[None])[0]
    pixel_mm = 80.0 / view.shape[0]
    assert np.max(np.hypot(rows - r, cols - c)) * pixel_mm < 32.0  # localized at the cut


def test_same_generator_same_fracture_and_input_untouched(forearm):
    before = forearm.data.copy()
    a, ra = simulate_fracture(forearm, np.random.default_rng(7))
    b, rb = simulate_fracture(forearm, np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    assert ra.to_dict() == rb.to_dict()
    np.testing.assert_array_equal(forearm.data, before)
    c, _ = simulate_fracture(forearm, np.random.default_rng(8))
    assert not np.array_equal(a.data, c.data)


def test_no_bone_and_bad_ranges_are_reported():
    soft = Volume(np.full((16, 16, 16), 40.0, np.float32), np.eye(4), "soft.nii.gz")
    with pytest.raises(NoBoneError, match="soft.nii.gz: no bone"):
        simulate_fracture(soft, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fracture.kinds"):
        replace(FractureConfig(), kinds=("crush",), kind_probs=(1.0,)).validate()
    with pytest.raises(ValueError, match="fracture.shift_mm"):
        replace(FractureConfig(), shift_mm=(3.0, 1.0)).validate()


COMMINUTED = FractureConfig(kinds=("comminuted",), kind_probs=(1.0,), tilt_deg=(0.0, 10.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_comminuted_fracture_moves_three_pieces_beyond_the_cut(forearm, seed):
    fractured, rec = simulate_fracture(forearm, np.random.default_rng(seed), COMMINUTED)
    assert rec.kind == "comminuted" and rec.fragments == 3
    assert 6.0 <= rec.segment_mm <= 14.0
    changed = _changed_world(forearm, fractured)
    side = (changed - rec.point) @ rec.normal
    assert side.min() > -12.0  # only the far side of the first cut (plus motion) changes
    # The intermediate segment changed too, not only the far fragment.
    assert np.count_nonzero((side > 1.0) & (side < rec.segment_mm - 1.0)) > 100
    assert abs((fractured.data > 300).sum() / (forearm.data > 300).sum() - 1) < 0.08


def test_region_cache_gives_the_same_fracture(forearm):
    bones = bone_components(forearm, FractureConfig())
    cache: dict = {}
    for seed in (5, 6, 5):
        cached, rc = simulate_fracture(
            forearm, np.random.default_rng(seed), bones=bones, cache=cache
        )
        fresh, rf = simulate_fracture(forearm, np.random.default_rng(seed))
        np.testing.assert_array_equal(cached.data, fresh.data)
        assert rc.to_dict() == rf.to_dict()
    assert 1 <= len(cache) <= 2


def test_plane_distance_is_the_signed_distance_of_voxel_centres():
    from helpers import oblique_affine

    vol = Volume(np.zeros((6, 5, 4), np.float32), oblique_affine())
    box = (slice(1, 5), slice(0, 3), slice(2, 4))
    point, normal = np.array([3.0, -2.0, 7.0]), np.array([0.6, 0.0, 0.8])
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    xyz = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3).astype(float))
    expected = ((xyz - point) @ normal).reshape(k.shape)
    np.testing.assert_allclose(_plane_distance(vol, box, point, normal), expected, atol=1e-4)


def test_comminuted_cut_near_the_end_records_only_what_moved(forearm):
    # The middle segment reaches past the bone's end: no far piece, so no far-piece motion.
    cfg = replace(COMMINUTED, cut_range=(0.05, 0.1), segment_mm=(150.0, 160.0))
    fractured, rec = simulate_fracture(forearm, np.random.default_rng(0), cfg)
    assert rec.fragments == 2 and rec.changed_voxels > 0
    np.testing.assert_array_equal(rec.rotation, np.eye(3))
    np.testing.assert_array_equal(rec.translation, np.zeros(3))
