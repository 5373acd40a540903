"""The projector's 16-bit steps (`kernels.value_scale`): when they are used, what they cost."""

import numpy as np
import pytest
from helpers import centred, oblique_affine

from drrgen.errors import UserError
from drrgen.geometry import carm_view
from drrgen.projector import kernels, project
from drrgen.volume import Volume
from drrgen.volume.volume import LAYOUT_SLACK


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.setattr(kernels, "PRECISION", "auto")
    monkeypatch.delenv("DRRGEN_PRECISION", raising=False)


def _vol(data) -> Volume:
    data = np.asarray(data, np.float32)
    return Volume(data, centred(np.eye(4), data.shape[::-1]))


def blobs(n: int = 48, seed: int = 0) -> Volume:
    """A smooth mu-like volume (values >= 0, 1/mm) on an oblique anisotropic grid."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[:n, :n, :n].astype(np.float32) / n - 0.5
    data = np.zeros((n, n, n), np.float32)
    for _ in range(6):
        c, s = rng.uniform(-0.3, 0.3, 3), rng.uniform(0.05, 0.2)
        data += np.exp(-((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2) / (2 * s * s))
    return Volume(data * np.float32(0.02), centred(oblique_affine(), (n, n, n)))


def test_which_volumes_are_read_as_steps():
    rng = np.random.default_rng(0)
    mu = rng.random((6, 7, 8), dtype=np.float32) * np.float32(0.05)
    assert kernels.value_scale(_vol(mu)) == np.float32(mu.max() / 65535.0)
    for bad in (-1.0, np.nan, np.inf):  # HU, damaged values: float32
        odd = mu.copy()
        odd[2, 3, 4] = bad
        assert kernels.value_scale(_vol(odd)) is None, bad
    assert kernels.value_scale(_vol(np.zeros((4, 4, 4)))) is None
    # One voxel far above the rest would make the steps coarse for everything else: the
    # maximum may be up to MAX_OVER_MEAN times the mean of the positive values.
    flat = np.full((10, 10, 10), 0.01, np.float32)
    for factor, steps in ((0.99, True), (1.01, False)):
        peak = flat.copy()
        # m = factor * K * mean, mean = (999 * 0.01 + m) / 1000  =>  m = 9.99 f K / (1000 - f K)
        fk = factor * kernels.MAX_OVER_MEAN
        peak[0, 0, 0] = 9.99 * fk / (1000 - fk)
        assert (kernels.value_scale(_vol(peak)) is not None) == steps, factor
    # Values so small that the step would be subnormal: float32.
    assert kernels.value_scale(_vol(np.full((4, 4, 4), 1e-37))) is None
    # Air (exact zeros) does not count towards the mean: a small body in a large field of view.
    sparse = np.zeros((40, 40, 40), np.float32)
    sparse[:4, :4, :4] = mu[:4, :4, :4]
    assert kernels.value_scale(_vol(sparse)) is not None


def test_precision_is_chosen_by_code_then_environment(monkeypatch):
    vol = _vol(np.ones((4, 4, 4)))
    monkeypatch.setenv("DRRGEN_PRECISION", "float32")
    assert kernels.precision_choice() == "float32" and kernels.value_scale(vol) is None
    monkeypatch.setenv("DRRGEN_PRECISION", "")  # set but empty: as unset
    assert kernels.value_scale(vol) == np.float32(1 / 65535)
    monkeypatch.setenv("DRRGEN_PRECISION", "half")
    with pytest.raises(UserError, match="DRRGEN_PRECISION: must be 'auto' or 'float32'"):
        kernels.value_scale(vol)
    monkeypatch.setattr(kernels, "PRECISION", "float32")  # the code's setting wins
    assert kernels.value_scale(vol) is None
    monkeypatch.setattr(kernels, "PRECISION", "half")
    with pytest.raises(ValueError, match="kernels.PRECISION must be"):
        kernels.precision_choice()


@pytest.mark.parametrize("inner", [False, True])
def test_counts_layout_is_the_float_layout_in_steps(inner):
    vol = blobs(40)
    scale = kernels.value_scale(vol)
    for m in range(3):
        floats = vol.axis_major_buffer(m, inner)
        layout = vol.axis_major_buffer(m, inner, scale)
        assert layout.shape == floats.shape
        assert layout.dtype == (np.uint32 if inner else np.uint16)
        counts = layout & 0xFFFF
        expected = np.clip(np.rint(floats / np.float64(scale)), 0, 65535)
        np.testing.assert_array_equal(counts, expected)
        assert counts.max() == 65535 and not layout[-LAYOUT_SLACK:].any()
        if inner:  # the high half: the count of the neighbour along a, B entries on
            w_a = vol.axis_major_shape(m, True)[3]
            np.testing.assert_array_equal(layout[:-w_a] >> 16, counts[w_a:])
        # Every voxel within half a step of its value.
        assert np.abs(counts * np.float64(scale) - floats).max() <= 0.5 * scale * (1 + 1e-12)
        assert vol.axis_major_buffer(m, inner, scale) is layout  # cached


@pytest.mark.parametrize("angles", [(0, 0), (30, 10), (90, 0), (135, 20)])
def test_steps_move_a_drr_by_less_than_half_a_step_per_mm(monkeypatch, angles):
    vol = blobs()
    scale = kernels.value_scale(vol)
    view = carm_view(
        *angles, source_to_isocenter_mm=200, source_to_detector_mm=350, pixel_mm=1.2,
        shape=(40, 44),
    )  # fmt: skip
    steps = project(vol, view)
    monkeypatch.setattr(kernels, "PRECISION", "float32")
    floats = project(vol, view)
    diff = np.abs(steps - floats)
    # Each sample moves by at most scale / 2: at most scale / 2 per mm of the ray inside the
    # volume (its diagonal bounds that), plus float32 rounding of the sums.
    diagonal_mm = np.linalg.norm(np.array(vol.shape_ijk) * vol.spacing)
    assert diff.max() <= 0.5 * scale * diagonal_mm + 1e-6 * floats.max()
    # Rounding errors of neighbouring voxels cancel: far below that bound in practice.
    assert 0 < diff.max() <= 1e-5 * floats.max()


def test_hu_volumes_keep_float32_values(monkeypatch):
    # Negative values (a CT in HU) are read as given: the image is the float32 one bitwise.
    vol = blobs(32)
    hu = Volume(vol.data / np.float32(0.02) * np.float32(1000) - np.float32(1000), vol.affine)
    view = carm_view(20, 10, source_to_isocenter_mm=200, source_to_detector_mm=350, shape=(24, 24))
    auto = project(hu, view)
    monkeypatch.setattr(kernels, "PRECISION", "float32")
    assert np.array_equal(auto, project(hu, view))


def test_a_crop_far_below_its_roots_maximum_keeps_the_roots_absolute_bound(monkeypatch):
    # The steps are the root's: a crop of small values sees steps that are coarse relative to
    # its own values, and still within root max / 131070 per sample.
    data = np.full((32, 32, 32), 0.001, np.float32)
    data[:, :, 16:] = 1.0
    vol = Volume(data, centred(np.eye(4), (32, 32, 32)))
    low = vol.crop((0, 0, 0), (16, 32, 32))  # only the 0.001 half
    view = carm_view(0, 0, source_to_isocenter_mm=200, source_to_detector_mm=350, shape=(24, 24))
    steps = project(low, view)
    monkeypatch.setattr(kernels, "PRECISION", "float32")
    floats = project(low, view)
    scale = float(np.float32(1.0 / 65535))
    assert 0 < np.abs(steps - floats).max() <= 0.5 * scale * 32 * np.sqrt(3) + 1e-6 * floats.max()
