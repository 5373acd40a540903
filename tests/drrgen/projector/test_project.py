"""The projector against analytic line integrals, crops, threads and orientation."""

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import ball_volume, box_chords, centred, oblique_affine

from drrgen.errors import UserError
from drrgen.geometry import View, carm_view
from drrgen.projector import kernels, project
from drrgen.volume import Volume
from drrgen.volume.volume import LAYOUT_SLACK


def test_point_source_inside_is_rejected_gracefully():
    # A zero-size detector is invalid; a regular one outside the volume is the normal case.
    with pytest.raises(ValueError):
        View([0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1], (0, 3))


@pytest.mark.parametrize("angles", [(0, 0), (90, 0), (30, 20), (-65, 35), (180, -10)])
def test_uniform_box_matches_analytic_chords(angles):
    shape = (40, 34, 28)
    affine = centred(oblique_affine(), shape)
    vol = Volume(np.ones(shape[::-1], np.float32), affine)
    view = carm_view(
        *angles, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6, shape=(48, 56)
    )
    drr = project(vol, view)
    ref = box_chords(vol, view)
    assert drr.shape == (48, 56) and drr.dtype == np.float32
    hit = ref > 0
    assert hit.mean() > 0.3  # the box covers a good part of the image
    err = np.abs(drr - ref)
    # Rays through the end faces of their stepping axis are exact; crossing a side face costs
    # a fraction of a voxel (the bilinear ramp); only rays grazing a face for a long stretch
    # see more.
    h = vol.spacing.max()
    assert np.median(err[hit]) < 0.1 * h
    assert np.percentile(err[hit], 99) < 1.5 * h
    assert err.max() < 4 * h
    long = ref > 5 * h
    assert (err[long] / ref[long]).mean() < 0.005


@pytest.mark.parametrize("angles", [(0, 0), (40, 25), (110, -30)])
def test_ball_matches_analytic_chords(angles):
    shape = (36, 40, 30)
    affine = centred(oblique_affine(spacing=(1.0, 0.8, 1.3)), shape)
    centre, radius = np.array([1.5, -2.0, 1.0]), 13.0
    vol = ball_volume(shape, affine, centre, radius)
    view = carm_view(
        *angles, source_to_isocenter_mm=250, source_to_detector_mm=450, pixel_mm=0.9, shape=(64, 64)
    )
    drr = project(vol, view)
    # Distance of each ray from the ball centre -> chord 2 sqrt(R^2 - d^2).
    pix = view.pixel_centers()
    ray = (pix - view.source) / np.linalg.norm(pix - view.source, axis=-1, keepdims=True)
    w = centre - view.source
    dist = np.linalg.norm(w - (ray @ w)[..., None] * ray, axis=-1)
    ref = 2 * np.sqrt(np.maximum(radius**2 - dist**2, 0))
    core = dist < radius - 2.0
    rel = np.abs(drr[core] - ref[core]) / ref[core]
    assert rel.max() < 0.06 and np.median(rel) < 0.01
    # Outside the ball (beyond the partial-volume rim and the ramp) nothing is seen.
    assert np.abs(drr[dist > radius + 2.5]).max() < 1e-6
    # The integral of the image over the detector tracks the ball's volume (divergent beam:
    # compare the ball's shadow area times mean chord = volume * magnification^2).
    mag = 450 / np.linalg.norm(centre - view.source)
    shadow = drr.sum() * 0.9 * 0.9 / mag**2
    assert abs(shadow / (4 / 3 * np.pi * radius**3) - 1) < 0.05


def test_dense_blob_lands_where_the_pinhole_projects_it():
    shape = (50, 50, 50)
    affine = centred(oblique_affine(), shape)
    centre = np.array([6.0, -9.0, 11.0])
    vol = ball_volume(shape, affine, centre, 2.5, supersample=2)
    view = carm_view(
        25,
        15,
        source_to_isocenter_mm=400,
        source_to_detector_mm=700,
        pixel_mm=1.0,
        shape=(80, 80),
        isocenter=(2, 1, -3),
    )
    drr = project(vol, view)
    w = drr / drr.sum()
    rows, cols = np.mgrid[0:80, 0:80]
    peak = np.array([(w * rows).sum(), (w * cols).sum()])
    np.testing.assert_allclose(peak, view.project_points(centre), atol=0.3)


def test_crop_is_projected_without_copy_like_a_standalone_volume():
    rng = np.random.default_rng(1)
    shape = (30, 26, 22)
    vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
    view = carm_view(
        70, 20, source_to_isocenter_mm=200, source_to_detector_mm=400, pixel_mm=1.2, shape=(40, 40)
    )
    sub = vol.crop((4, 3, 5), (25, 20, 18))
    standalone = Volume(sub.data.copy(), sub.affine)
    np.testing.assert_allclose(project(sub, view), project(standalone, view), rtol=1e-5, atol=1e-5)
    # The crop's voxels keep their physical positions.
    np.testing.assert_allclose(sub.index_to_world([0, 0, 0]), vol.index_to_world([4, 3, 5]))


@pytest.mark.parametrize("crop", [False, True])
def test_swapping_detector_axes_transposes_the_image(crop):
    # The same rays with u and v exchanged: groups of rays then run along detector columns
    # instead of rows (`group_rays`), with crop masks on the other side of the lanes.
    rng = np.random.default_rng(3)
    shape = (34, 30, 26)
    vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
    if crop:
        vol = vol.crop((3, 5, 2), (30, 22, 21))
    view = carm_view(
        25, 15, source_to_isocenter_mm=250, source_to_detector_mm=420, pixel_mm=1.1, shape=(37, 45)
    )
    swapped = View(view.source, view.detector_center, view.v, view.u, (45, 37))
    drr, drr_swapped = project(vol, view), project(vol, swapped)
    assert drr.max() > 10
    np.testing.assert_allclose(drr_swapped, drr.T, rtol=1e-5, atol=1e-5)


def test_groups_hold_every_hit_ray_once_in_neighbouring_lanes():
    rng = np.random.default_rng(4)
    n, h, w = 5000, 50, 100
    axis = rng.integers(0, 3, n).astype(np.int8)
    kmin = rng.integers(0, 10, n).astype(np.int32)
    kmax = rng.integers(0, 10, n).astype(np.int32)
    a0, da, b0, db = rng.random((4, n), dtype=np.float32)
    seen = []
    for along_rows in (True, False):
        ids = []
        for m in range(3):
            lanes, tile_ptr = kernels.group_rays(
                axis, kmin, kmax, a0, da, b0, db, h, w, m, along_rows, np.inf
            )
            assert tile_ptr[0] == 0 and tile_ptr[-1] == lanes.shape[0]
            assert np.all(np.diff(tile_ptr) >= 1)
            got = lanes[lanes >= 0]
            assert np.all(axis[got] == m) and np.all(kmin[got] <= kmax[got])
            assert np.all((lanes >= 0).any(axis=1))  # no empty group
            # Lanes of a group are consecutive pixels along one detector row (or column).
            rows, cols = np.divmod(lanes, w)
            line, along = (rows, cols) if along_rows else (cols, rows)
            for g in range(lanes.shape[0]):
                used = lanes[g] >= 0
                assert len(set(line[g][used])) == 1
                lane_no = np.flatnonzero(used)
                assert np.all(along[g][used] - lane_no == along[g][used][0] - lane_no[0])
            # A tile is one band of TILE_ROWS adjacent lines.
            for t0, t1 in zip(tile_ptr[:-1], tile_ptr[1:], strict=True):
                bands = set(line[t0:t1][lanes[t0:t1] >= 0] // kernels.TILE_ROWS)
                assert len(bands) == 1
            ids.append(got)
        seen.append(np.sort(np.concatenate(ids)))
    expected = np.flatnonzero(kmin <= kmax)
    for got in seen:
        np.testing.assert_array_equal(got, expected)


def _oblique_rays(n=64, det=96, angles=(135, 20)):
    from drrgen.projector.rays import setup_rays

    rng = np.random.default_rng(7)
    vol = Volume(rng.random((n, n, n), dtype=np.float32), centred(np.eye(4), (n, n, n)))
    view = carm_view(
        *angles, source_to_isocenter_mm=200, source_to_detector_mm=300, pixel_mm=0.9,
        shape=(det, det),
    )  # fmt: skip
    return vol, view, setup_rays(vol, view)


def _groups(rays, det, m, plane_spread):
    axis, a0, da, b0, db, kmin, kmax = rays.params[:7]
    a = [c for c in range(3) if c != m][0]
    along_rows = abs(rays.du[a]) >= abs(rays.dv[a])
    return kernels.group_rays(
        axis, kmin, kmax, a0, da, b0, db, det, det, m, along_rows, plane_spread
    )


def _row_spread(lanes, rays):
    """Per group: rows b apart of its rays at its first and last slices (max of the two)."""
    b0, db, kmin, kmax = rays.params[3], rays.params[4], rays.params[5], rays.params[6]
    out = []
    for ids in lanes:
        ids = ids[ids >= 0]
        ks = np.array([kmin[ids].min(), kmax[ids].max()], np.float32)
        rows = np.floor(b0[ids][None] + ks[:, None] * db[ids][None])
        out.append((rows.max(1) - rows.min(1)).max())
    return np.array(out)


def test_plane_groups_read_one_or_two_rows_where_detector_rows_drift():
    # (135, 20) deg: the rays of a detector row drift across several rows b of the layout;
    # grouped along planes of equal db they stay within one row of each other.
    vol, view, rays = _oblique_rays()
    axis, kmin, kmax = rays.params[0], rays.params[5], rays.params[6]
    det = view.shape[0]
    ids = []
    for m in range(3):
        rows_lanes, _ = _groups(rays, det, m, np.inf)
        if rows_lanes.shape[0] == 0:
            continue
        lanes, tile_ptr = _groups(rays, det, m, 0.0)
        assert tile_ptr[0] == 0 and tile_ptr[-1] == lanes.shape[0]
        assert np.all(np.diff(tile_ptr) >= 1) and np.all((lanes >= 0).any(axis=1))
        assert np.all(axis[lanes[lanes >= 0]] == m)
        ids.append(lanes[lanes >= 0])
        row_spread, plane_spread = _row_spread(rows_lanes, rays), _row_spread(lanes, rays)
        assert row_spread.mean() > 2.5, row_spread.mean()
        assert plane_spread.max() <= 2 and plane_spread.mean() <= 1.2, plane_spread.mean()
    got = np.sort(np.concatenate(ids))
    np.testing.assert_array_equal(got, np.flatnonzero((kmin <= kmax) & (axis >= 0)))


def test_plane_grouping_is_chosen_by_spread_and_gives_the_same_drr(monkeypatch):
    vol, view, rays = _oblique_rays()
    det = view.shape[0]
    m = int(np.bincount(rays.params[0]).argmax())
    rows_lanes, _ = _groups(rays, det, m, np.inf)
    auto, _ = _groups(rays, det, m, kernels.PLANE_SPREAD)
    planes, _ = _groups(rays, det, m, 0.0)
    assert not np.array_equal(rows_lanes, planes)
    # This view's row groups drift over more than PLANE_SPREAD rows: planes are chosen.
    b0, db, kmin, kmax = rays.params[3:7]
    assert kernels._mean_row_spread(rows_lanes, b0, db, kmin, kmax) > kernels.PLANE_SPREAD
    np.testing.assert_array_equal(auto, planes)
    # A view facing the slices squarely keeps detector rows.
    _, _, square = _oblique_rays(angles=(0, 0))
    m0 = int(np.bincount(square.params[0]).argmax())
    np.testing.assert_array_equal(
        _groups(square, det, m0, kernels.PLANE_SPREAD)[0], _groups(square, det, m0, np.inf)[0]
    )
    # Same samples, same order per ray, and a sample's arithmetic does not depend on whether
    # its group is masked there: the images are bitwise the same, also on crops (masked
    # steps at the crop's faces) and for any thread count.
    spreads = []
    group_rays = kernels.group_rays

    def spy(*args):
        spreads.append(args[-1])
        return group_rays(*args)

    monkeypatch.setattr(kernels, "group_rays", spy)
    monkeypatch.setattr(kernels, "LAYOUT", "rows")
    images = []
    for volume in (vol, vol.crop((3, 5, 2), (40, 44, 30))):
        monkeypatch.setattr(kernels, "PLANE_SPREAD", np.inf)
        by_rows = project(volume, view)
        images.append(by_rows)
        monkeypatch.setattr(kernels, "PLANE_SPREAD", 0.0)
        by_planes = project(volume, view, threads=1)
        assert by_rows.max() > 10 and np.array_equal(by_planes, by_rows)
        assert np.array_equal(by_planes, project(volume, view, threads=2))
    assert set(spreads) == {np.inf, 0.0}  # read at call time
    # The slices-inner layout (gathers) keeps detector rows: planes only help row loads.
    spreads.clear()
    monkeypatch.setattr(kernels, "LAYOUT", "slices")
    assert np.array_equal(project(vol, view), images[0]) and set(spreads) == {np.inf}


def test_stable_argsort_known_answers():
    x = np.array([3.0, 1.0, 2.0, 1.0, 3.0, 0.5])
    assert kernels._argsort_stable(x).tolist() == [5, 1, 3, 2, 0, 4]  # ties keep their order
    assert kernels._argsort_stable(np.empty(0)).tolist() == []
    rng = np.random.default_rng(3)
    for n in (1, 2, 17, 128, 1001):
        x = np.round(rng.random(n) * 5)
        np.testing.assert_array_equal(kernels._argsort_stable(x), np.argsort(x, kind="stable"))


@pytest.mark.parametrize("flip", [1.0, -1.0])
def test_tiles_walk_the_layout_forwards_whatever_the_axes_orientation(flip):
    # A CT stored with a flipped axis (RAS files in LPS) maps detector columns to decreasing
    # voxel indices; a tile's groups are still ordered along increasing a.
    from drrgen.projector.rays import setup_rays

    n, det = 40, 48
    affine = np.diag([1.0, flip, 1.0, 1.0])
    vol = Volume(np.ones((n, n, n), np.float32), centred(affine, (n, n, n)))
    view = carm_view(90, 0, source_to_isocenter_mm=200, source_to_detector_mm=300, shape=(det, det))
    rays = setup_rays(vol, view)
    axis, a0, da, kmin, kmax = (rays.params[i] for i in (0, 1, 2, 5, 6))
    m = int(np.bincount(axis).argmax())

    def mid_a(lanes):
        first = lanes[np.arange(len(lanes)), (lanes >= 0).argmax(axis=1)]  # first valid lane
        return a0[first] + 0.5 * (kmin[first] + kmax[first]) * da[first]

    lanes, tile_ptr = _groups(rays, det, m, np.inf)
    ordered = mid_a(lanes)
    for t0, t1 in zip(tile_ptr[:-1], tile_ptr[1:], strict=True):
        assert np.all(np.diff(ordered[t0:t1]) >= 0)
    # In detector order the flipped volume's groups run backwards along a.
    a = [c for c in range(3) if c != m][0]
    raw, _ = kernels._row_groups(axis, kmin, kmax, det, det, m, abs(rays.du[a]) >= abs(rays.dv[a]))
    assert (np.diff(mid_a(raw)[: tile_ptr[1]]) < 0).any() == (flip < 0)


def test_bitwise_identical_for_any_thread_count():
    rng = np.random.default_rng(2)
    shape = (33, 29, 31)
    vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
    view = carm_view(
        45, 30, source_to_isocenter_mm=200, source_to_detector_mm=350, pixel_mm=1.0, shape=(37, 41)
    )
    one, two = project(vol, view, threads=1), project(vol, view, threads=2)
    assert np.array_equal(one, two)


def test_rays_missing_the_volume_are_zero_and_units_scale():
    shape = (20, 20, 20)
    vol = Volume(np.full(shape, 0.02, np.float32), centred(np.diag([2.0, 2.0, 2.0, 1.0]), shape))
    far = carm_view(0, 0, isocenter=(500, 0, 0), shape=(16, 16))
    assert np.all(project(vol, far) == 0)
    # A central AP ray crosses 20 voxels of 2 mm: 0.02 /mm * 40 mm = 0.8.
    view = carm_view(
        0, 0, source_to_isocenter_mm=1000, source_to_detector_mm=1500, pixel_mm=0.5, shape=(2, 2)
    )
    np.testing.assert_allclose(project(vol, view), 0.8, rtol=1e-4)


@pytest.mark.parametrize("offset", [-8e-7, 8e-7, -1e-300, 1e-320, 0.0])
def test_ray_grazing_a_face_from_outside_reads_nothing(offset):
    # Regression (a build worker crashed on it): a ray outside the box, nearly parallel to a
    # face, crosses that face ~3e9 slices away; the crossing cast to int32 wrapped around into
    # a huge slice range read far out of bounds. Such a ray has no slice with any weight.
    vol = Volume(np.ones((8, 8, 8), np.float32), np.eye(4))
    src, det = [-100.0, 20.0, 3.5], [100.0, 20.0 + offset, 3.5]
    view = View(src, det, [0.0, 0.0, 1e-3], [0.0, 1e-3, 0.0], (1, 1))
    box = (np.zeros(3, np.int64), np.full(3, 8, np.int64))  # identity affine: index = mm
    v = view.as_vector()
    setup = kernels.ray_setup(v[0:3], v[3:6], v[6:9], v[9:12], 1, 1, *box, np.eye(3))
    kmin, kmax, kin0, kin1 = (int(x[0]) for x in setup[5:9])
    assert kmin > kmax and kin0 > kin1
    assert project(vol, view)[0, 0] == 0.0


@pytest.mark.parametrize("layout", ["rows", "slices"])
@pytest.mark.parametrize("block", [8, 64])
def test_layout_block_length_is_read_at_run_time(monkeypatch, block, layout):
    # The kernels take the block of slices from the layout, so another SLICE_BLOCK gives the
    # same image (same samples, same order) with no recompilation.
    import drrgen.volume.volume as volume_module

    rng = np.random.default_rng(5)
    data = rng.random((40, 29, 35), dtype=np.float32)
    affine = centred(oblique_affine(), (35, 29, 40))
    view = carm_view(
        35, 15, source_to_isocenter_mm=250, source_to_detector_mm=420, pixel_mm=1.1, shape=(33, 31)
    )
    monkeypatch.setattr(kernels, "LAYOUT", layout)
    expected = project(Volume(data, affine).crop((2, 3, 1), (30, 27, 38)), view)
    monkeypatch.setattr(volume_module, "SLICE_BLOCK", block)
    vol = Volume(data, affine)
    got = project(vol.crop((2, 3, 1), (30, 27, 38)), view)
    inner = layout == "slices"
    # The buffers the kernels read (16-bit counts here: values >= 0) have the new block.
    projected = {k[1:]: v for k, v in vol._cache.items() if k[0] == "axis_major_buffer"}
    assert projected and all(key[1] == inner for key in projected)
    for (m, _, scale), buf in projected.items():
        shape = vol.axis_major_shape(m, inner)
        assert scale is not None and shape[3 if inner else 2] == block
        assert buf.size == np.prod(shape) + LAYOUT_SLACK
    assert np.array_equal(got, expected)


def test_layout_is_chosen_by_code_then_environment_then_cpu(monkeypatch):
    monkeypatch.setattr(kernels, "LAYOUT", "auto")
    monkeypatch.delenv("DRRGEN_LAYOUT", raising=False)
    # The CPU rule, whatever this host is: gathers on the slices-inner layout unless row loads
    # can run (AVX-512 target, ROW_LOADS on) and the CPU's gathers are slow.
    for avx512, fast, row_loads, inner, why in (
        (True, False, True, False, "slow gathers"),
        (True, True, True, True, "fast gathers"),
        (False, False, True, True, "no AVX-512"),
        (True, False, False, True, "ROW_LOADS off"),
    ):
        monkeypatch.setattr(kernels, "target_has_avx512", lambda v=avx512: v)
        monkeypatch.setattr(kernels, "fast_gathers", lambda v=fast: v)
        monkeypatch.setattr(kernels, "ROW_LOADS", row_loads)
        assert kernels.slices_inner() is inner, (avx512, fast, row_loads)
        assert kernels.layout_choice() == (inner, why)
    monkeypatch.setattr(kernels, "ROW_LOADS", True)  # with avx512, slow gathers: rows
    for value, inner in (("rows", False), ("slices", True)):
        monkeypatch.setenv("DRRGEN_LAYOUT", value)
        assert kernels.slices_inner() is inner
        assert kernels.layout_choice() == (inner, "forced")
        monkeypatch.setattr(kernels, "LAYOUT", "slices" if value == "rows" else "rows")
        assert kernels.slices_inner() is not inner  # the code's setting wins
        monkeypatch.setattr(kernels, "LAYOUT", "auto")
    monkeypatch.setenv("DRRGEN_LAYOUT", "")  # set but empty: as unset
    assert kernels.slices_inner() is False
    monkeypatch.setenv("DRRGEN_LAYOUT", "columns")
    with pytest.raises(UserError, match="DRRGEN_LAYOUT: must be"):
        kernels.slices_inner()
    monkeypatch.setattr(kernels, "LAYOUT", "columns")
    with pytest.raises(ValueError, match="kernels.LAYOUT must be"):
        kernels.slices_inner()


@pytest.mark.parametrize("precision", ["auto", "float32"])
@pytest.mark.parametrize("angles", [(0, 0), (35, 15), (135, 20), (-70, 40)])
def test_row_loads_give_the_gathers_images_bitwise(monkeypatch, angles, precision):
    # Interior steps load rows where the lanes' span allows (AVX-512 CPUs) and gather
    # elsewhere; both orders of operations are the same, so the images must be too. Oblique
    # views spread a group over several rows; the crop leaves empty lanes at its edges.
    # Both value types: uint16 steps ("auto", values >= 0 here) and float32.
    monkeypatch.setattr(kernels, "PRECISION", precision)
    rng = np.random.default_rng(6)
    shape = (61, 47, 53)
    vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
    view = carm_view(
        *angles, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=0.9,
        shape=(70, 66),
    )  # fmt: skip
    for volume in (vol, vol.crop((3, 5, 2), (50, 44, 58))):
        monkeypatch.setattr(kernels, "LAYOUT", "rows")
        rows = project(volume, view)
        monkeypatch.setattr(kernels, "ROW_LOADS", False)
        gathers = project(volume, view)
        # The layout for CPUs that gather (slices inner): the same samples, the same bits.
        monkeypatch.setattr(kernels, "LAYOUT", "slices")
        slices = project(volume, view)
        monkeypatch.setattr(kernels, "ROW_LOADS", True)
        assert np.abs(rows).max() > 0 and np.array_equal(rows, gathers)
        assert np.array_equal(rows, slices)


_AVX2_ONLY = "+avx2,+fma,+avx,+sse4.2,+popcnt,+bmi,+bmi2,+f16c,+lzcnt,+movbe,-avx512f"


@pytest.mark.slow  # compiles every projector kernel afresh for the other target: about 20 s
def test_avx2_only_target_gathers_on_the_slices_inner_layout_with_the_same_bits(tmp_path):
    # A CPU without AVX-512 (emulated: Numba compiles for an AVX2-only target, fresh cache)
    # gets the gathering kernels on the slices-inner layout, and the same image bitwise.
    import json
    import subprocess
    import sys

    script = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from helpers import centred, oblique_affine
from drrgen.geometry import carm_view
from drrgen.projector import kernels, project
from drrgen.volume import Volume
shape = (61, 47, 53)
rng = np.random.default_rng(6)
vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
view = carm_view(35, 15, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=0.9,
                 shape=(70, 66))
drr = project(vol.crop((3, 5, 2), (50, 44, 58)), view)
print(json.dumps({"slices_inner": kernels.slices_inner(), "drr": drr.tobytes().hex()}))
"""
    env = dict(os.environ)
    env.update(
        NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_AVX2_ONLY, NUMBA_CACHE_DIR=str(tmp_path)
    )
    tests_dir = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", script, tests_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["slices_inner"] is True
    rng = np.random.default_rng(6)
    shape = (61, 47, 53)
    vol = Volume(rng.random(shape[::-1], dtype=np.float32), centred(oblique_affine(), shape))
    view = carm_view(
        35, 15, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=0.9,
        shape=(70, 66),
    )  # fmt: skip
    here = project(vol.crop((3, 5, 2), (50, 44, 58)), view)
    assert here.tobytes().hex() == got["drr"]
