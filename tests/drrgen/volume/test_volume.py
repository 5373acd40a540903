"""`Volume.crop` keeps physical positions; `Volume.to_mu` follows the HU -> mu formula."""

import numpy as np
import pytest

from drrgen.volume import Volume
from drrgen.volume.volume import LAYOUT_SLACK, SLICE_BLOCK


def test_crop_keeps_physical_positions(ct_volume):
    sub = ct_volume.crop((1, 2, 3), (5, 6, 8))
    assert sub.shape_ijk == (4, 4, 5)
    ijk = np.array([[0, 0, 0], [3, 3, 4], [1, 2, 3]], dtype=float)
    np.testing.assert_allclose(sub.index_to_world(ijk), ct_volume.index_to_world(ijk + [1, 2, 3]))
    for i, j, k in ijk.astype(int):
        assert sub.data[k, j, i] == ct_volume.data[k + 3, j + 2, i + 1]
    np.testing.assert_allclose(sub.direction, ct_volume.direction)
    np.testing.assert_allclose(sub.spacing, ct_volume.spacing)


def test_crop_clips_to_the_grid_and_rejects_empty(ct_volume):
    assert ct_volume.crop((-3, 0, 0), (100, 7, 9)).shape_ijk == ct_volume.shape_ijk
    with pytest.raises(ValueError, match="empty crop"):
        ct_volume.crop((4, 0, 0), (4, 7, 9))


def test_to_mu_formula_and_clipping():
    hu = np.array([-2000, -1000, -500, 0, 1000, 3000, 0, 0], np.float32).reshape(2, 2, 2)
    mu = Volume(hu, np.eye(4)).to_mu(mu_water=0.025)
    expected = 0.025 * np.maximum(0.0, 1.0 + hu.astype(np.float64) / 1000.0)
    np.testing.assert_allclose(mu.data, expected, rtol=1e-6)
    assert mu.data.min() == 0.0 and mu.data.dtype == np.float32
    assert mu.data.flat[3] == pytest.approx(0.025)  # water
    np.testing.assert_array_equal(mu.affine, np.eye(4))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_major_layout(axis):
    rng = np.random.default_rng(0)
    data = rng.random((35, 20, 7), dtype=np.float32)  # [k, j, i]: n_i 7, n_j 20, n_k 35
    vol = Volume(data, np.eye(4))
    lay = vol.axis_major(axis)
    n = (7, 20, 35)
    a, b = [c for c in range(3) if c != axis]
    blocks = -(-n[axis] // SLICE_BLOCK)
    assert lay.shape == (blocks, n[b] + 3, SLICE_BLOCK, n[a] + 3)
    for _ in range(50):
        ijk = [int(rng.integers(0, n[c])) for c in range(3)]
        m = ijk[axis]
        got = lay[m // SLICE_BLOCK, ijk[b] + 1, m % SLICE_BLOCK, ijk[a] + 1]
        assert got == data[ijk[2], ijk[1], ijk[0]]
    # Everything else is the zero border.
    assert lay.sum(dtype=np.float64) == pytest.approx(data.sum(dtype=np.float64), rel=1e-6)
    assert vol.axis_major(axis) is lay  # cached
    # The projector's input: the same values, then zeros its row loads may run into.
    buf = vol.axis_major_buffer(axis)
    assert np.shares_memory(buf, lay) and buf.size == lay.size + LAYOUT_SLACK
    assert np.array_equal(buf[: lay.size], lay.ravel()) and not buf[lay.size :].any()
    # For CPUs that gather: a voxel's slices of one block side by side, the same values.
    inner = vol.axis_major(axis, slices_inner=True)
    assert inner.shape == (blocks, n[b] + 3, n[a] + 3, SLICE_BLOCK)
    assert np.array_equal(inner, lay.transpose(0, 1, 3, 2))
    assert vol.axis_major(axis, slices_inner=True) is inner and vol.axis_major(axis) is lay
    flat = vol.axis_major_buffer(axis, slices_inner=True)
    assert np.shares_memory(flat, inner) and not np.shares_memory(flat, buf)
