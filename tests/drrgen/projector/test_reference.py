"""The projector against a plain float64 Joseph reference on small random cases.

The cases are the projector's hard corners: rotated anisotropic grids, crops (also one voxel
thick) of volumes whose voxels outside the crop are huge, rays along index axes, sources
near the volume, detectors of one row or column, both thread counts.
"""

import numpy as np
import pytest

from drrgen.geometry import View
from drrgen.projector import kernels, project
from drrgen.volume import Volume


def _value(root: Volume, lo, hi, ijk: np.ndarray) -> np.ndarray:
    """(n,) values of root voxels ijk (n, 3), zero outside the box [lo, hi)."""
    inside = np.all((ijk >= lo) & (ijk < hi), axis=1)
    out = np.zeros(len(ijk))
    q = ijk[inside]
    out[inside] = root.data[q[:, 2], q[:, 1], q[:, 0]]
    return out


def joseph_reference(volume: Volume, view: View) -> np.ndarray:
    """(H, W) float64 Joseph line integrals, one slice at a time for all rays (slow, simple)."""
    root, lo = volume.root
    hi = lo + np.array(volume.shape_ijk)
    inv = np.linalg.inv(root.affine)
    s = inv[:3, :3] @ view.source + inv[:3, 3]
    d = view.pixel_centers().reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3] - s
    ad = np.abs(d)
    axis = np.where(ad[:, 2] > ad[:, :2].max(1), 2, np.where(ad[:, 1] > ad[:, 0], 1, 0))
    rows = np.arange(len(d))
    step_mm = np.linalg.norm(d @ root.affine[:3, :3].T, axis=1) / ad[rows, axis]
    out = np.zeros(len(d))
    for m in range(3):
        sel = np.flatnonzero(axis == m)
        a, b = [c for c in range(3) if c != m]
        for k in range(lo[m], hi[m]):
            t = (k - s[m]) / d[sel, m]
            pa, pb = s[a] + t * d[sel, a], s[b] + t * d[sel, b]
            ia, ib = np.floor(pa).astype(np.int64), np.floor(pb).astype(np.int64)
            fa, fb = pa - ia, pb - ib
            for oa, wa in ((0, 1 - fa), (1, fa)):
                for ob, wb in ((0, 1 - fb), (1, fb)):
                    ijk = np.empty((sel.size, 3), np.int64)
                    ijk[:, m], ijk[:, a], ijk[:, b] = k, ia + oa, ib + ob
                    on = (t >= 0) & (t <= 1)
                    out[sel] += np.where(on, wa * wb * _value(root, lo, hi, ijk), 0.0)
    return (out * step_mm).reshape(view.shape)


def random_case(seed: int) -> tuple[Volume, View]:
    rng = np.random.default_rng(seed)
    shape = rng.choice([1, 2, 5, 17, 31, 33], size=3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    linear = (np.eye(3) if seed % 3 == 0 else q) @ np.diag(rng.uniform(0.5, 2.0, 3))
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, -linear @ ((shape - 1) / 2.0)
    # Huge values outside the crop: any leak of a neighbour through the unmasked path shows.
    data = np.full(shape[::-1], 1e4, np.float32)
    start = rng.integers(0, shape)
    stop = np.minimum(shape, start + rng.integers(1, 12, 3))
    if seed % 4 == 0:  # one voxel thick along one axis
        c = seed % 3
        stop[c] = start[c] + 1
    data[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]] = rng.random(
        tuple((stop - start)[::-1]), dtype=np.float32
    )
    vol = Volume(data, affine).crop(start, stop)
    ext = float(np.linalg.norm(shape * np.diag(linear.T @ linear) ** 0.5))
    direction = linear[:, seed % 3] if seed % 5 == 0 else rng.normal(size=3)  # along an axis
    direction = direction / np.linalg.norm(direction)
    dist = ext * rng.uniform(0.6, 4.0)
    source = direction * dist + rng.normal(size=3) * ext * 0.1
    u = np.cross(direction, rng.normal(size=3))
    u /= np.linalg.norm(u)
    v = np.cross(direction, u)
    pitch = ext * rng.uniform(0.03, 0.1)
    shape_hw = tuple(int(n) for n in rng.choice([1, 7, 17, 33], size=2))
    return vol, View(source, -direction * dist * 0.7, u * pitch, v * pitch, shape_hw)


def as_read(volume: Volume) -> Volume:
    """`volume` with the values the projector reads: its root's 16-bit steps (the crop kept),
    or itself when the kernels read float32 (`kernels.value_scale`)."""
    root, lo = volume.root
    scale = kernels.value_scale(root)
    if scale is None:
        return volume
    counts = np.clip(np.rint(root.data / np.float64(scale)), 0, 65535)
    stepped = Volume((counts * np.float64(scale)).astype(np.float32), root.affine)
    return stepped.crop(lo, lo + np.array(volume.shape_ijk))


@pytest.mark.parametrize("precision", ["float32", "auto"])
@pytest.mark.parametrize("seeds", [range(0, 20), range(20, 40)])
def test_random_cases_match_the_reference(monkeypatch, seeds, precision):
    # "auto": uint16 steps of the root's maximum (huge outside the crop here, so the crop's
    # values are coarse steps): the reference reads the same steps.
    monkeypatch.setattr(kernels, "PRECISION", precision)
    for seed in seeds:
        vol, view = random_case(seed)
        assert (kernels.value_scale(vol.root[0]) is None) == (precision == "float32")
        got = project(vol, view, threads=1)
        assert np.array_equal(got, project(vol, view, threads=2)), seed
        ref = joseph_reference(as_read(vol), view)
        # float32 ray parameters and sums against float64: a few 1e-5 of the values.
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4, err_msg=f"seed {seed}")


@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_one_voxel_thick_crop_reads_nothing_outside(monkeypatch, precision):
    # Regression: the interior range of a crop one voxel thick was an inverted interval,
    # which the clip turned into slices around the face, read without the crop's masks.
    monkeypatch.setattr(kernels, "PRECISION", precision)
    data = np.full((8, 16, 8), 1e4, np.float32)
    data[3] = 1.0
    crop = Volume(data, np.eye(4)).crop((0, 0, 3), (8, 16, 4))
    alone = Volume(as_read(crop).data.copy(), crop.affine)  # constant: its own steps are exact
    view = View([3.5, -200.0, 2.0], [3.5, 200.0, 4.0008], [1.0, 0, 0], [0, 0, 0.01], (1, 4))
    np.testing.assert_allclose(project(crop, view), project(alone, view), rtol=1e-5)
    assert project(crop, view).max() < 20


def test_segment_far_beyond_the_volume_reads_nothing():
    # Regression: a source-to-pixel segment ~4e9 voxels away along the stepping axis cast
    # its slice range to int32, which wrapped into a range read out of bounds.
    vol = Volume(np.ones((8, 8, 8), np.float32), np.eye(4))
    view = View([5e9, 3.5, 3.5], [4e9, 3.5, 3.5], [0, 0, 1e-3], [0, 1e-3, 0], (1, 1))
    assert project(vol, view)[0, 0] == 0.0
