"""The torch projector (`device=`) against the Numba one, analytic chords and its errors."""

import numpy as np
import pytest
import torch
from helpers import box_chords, centred, oblique_affine, tiny_ct

from drrgen.errors import UserError
from drrgen.geometry import View, carm_view
from drrgen.projector import project
from drrgen.projector.torch_joseph import DeviceError, parse_device
from drrgen.volume import Volume

# Agreement asked of the torch path: max |torch - numba| / max |numba| (both read the same
# values, 16-bit steps for volumes >= 0: float32 rounding of the samples and of their sums;
# measured ~5e-7).
REL_TOL = 1e-5
HAS_CUDA = torch.cuda.is_available()


def random_volume(shape=(64, 60, 56), seed=0) -> Volume:
    """Smooth-free random values on a rotated anisotropic grid: every voxel matters."""
    rng = np.random.default_rng(seed)
    data = rng.random(shape[::-1], dtype=np.float32)
    return Volume(data, centred(oblique_affine(), shape), "random")


def axis_view(volume: Volume, axis: int, tilt_deg: float, shape=(64, 64)) -> View:
    """A view whose central ray runs along index axis `axis`, tilted by `tilt_deg`.

    Rays (nearly) parallel to an index axis exercise the slope-0 and huge-slope cases of the
    per-ray set-up.
    """
    d = volume.affine[:3, :3][:, axis]
    d = d / np.linalg.norm(d)
    # Any unit vector orthogonal to d, then tilt d towards it.
    u = np.cross(d, [0.3, 0.5, 0.8])
    u /= np.linalg.norm(u)
    t = np.deg2rad(tilt_deg)
    d = np.cos(t) * d + np.sin(t) * u
    u = np.cross(d, np.cross(u, d))
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    centre = volume.center
    return View(centre - 250 * d, centre + 200 * d, 1.4 * u, 1.4 * v, shape)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def agree(volume: Volume, view: View, device: str) -> np.ndarray:
    """The torch DRR on `device`, checked against the Numba DRR; returns the torch one."""
    ref = project(volume, view)
    out = project(volume, view, device=device)
    assert ref.max() > 0  # the view sees something
    assert out.shape == ref.shape and out.dtype == np.float32
    assert rel_diff(out, ref) <= REL_TOL
    # Pixels the Numba path leaves at exactly zero (missed rays) stay exactly zero.
    assert np.all(out[ref == 0] == 0)
    return out


CARM_VIEWS = [(0, 0), (30, 20), (45, 0), (90, 0), (135, -20), (-65, 35)]


@pytest.mark.parametrize("angles", CARM_VIEWS)
@pytest.mark.parametrize("crop", [False, True])
def test_torch_cpu_matches_numba_on_oblique_views(angles, crop):
    vol = random_volume()
    if crop:
        vol = vol.crop((5, 7, 3), (50, 40, 55))
    view = carm_view(
        *angles, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6, shape=(64, 64)
    )
    agree(vol, view, "torch:cpu")


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("tilt", [0.0, 0.01, 1.0])
def test_torch_cpu_matches_numba_nearly_parallel_to_an_axis(axis, tilt):
    vol = random_volume().crop((2, 3, 1), (61, 58, 50))
    agree(vol, axis_view(vol, axis, tilt), "torch:cpu")


def test_torch_cpu_matches_numba_on_a_ct_and_a_one_voxel_crop():
    mu = tiny_ct().to_mu()
    view = carm_view(
        20, 10, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6,
        shape=(48, 40), isocenter=mu.center,
    )  # fmt: skip
    agree(mu, view, "torch:cpu")
    # A crop one voxel thick: its neighbours in the root must not leak in.
    agree(mu.crop((16, 3, 0), (17, 30, 40)), view, "torch:cpu")


def test_torch_reads_the_numba_paths_16_bit_steps():
    # A crop of values far below its root's maximum: its 16-bit steps are coarse (the root's),
    # and both paths read the same ones, so they still agree to float32 rounding.
    data = np.full((32, 32, 32), 0.001, np.float32)
    data[:, :, 16:] = 1.0
    vol = Volume(data, centred(np.eye(4), (32, 32, 32)))
    view = carm_view(0, 0, source_to_isocenter_mm=200, source_to_detector_mm=350, shape=(24, 24))
    agree(vol.crop((0, 0, 0), (16, 32, 32)), view, "torch:cpu")


def test_rays_missing_the_volume_are_zero():
    vol = random_volume()
    view = carm_view(
        30, 10, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6, shape=(64, 64)
    )
    # Shift the detector sideways: its left part sees the volume, the right part misses it.
    half = View(view.source, view.detector_center + 32 * view.u, view.u, view.v, view.shape)
    out = agree(vol, half, "torch:cpu")
    assert (out == 0).mean() > 0.2 and (out > 0).mean() > 0.2
    # A view looking away from the volume: every ray misses.
    away = View(view.source, 2 * view.source - view.detector_center, view.u, view.v, view.shape)
    assert np.all(project(vol, away, device="torch:cpu") == 0)


@pytest.mark.parametrize("angles", [(0, 0), (30, 20), (-65, 35)])
def test_uniform_box_matches_analytic_chords(angles):
    # As test_project's test of the same name, through the torch path.
    shape = (40, 34, 28)
    vol = Volume(np.ones(shape[::-1], np.float32), centred(oblique_affine(), shape))
    view = carm_view(
        *angles, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6, shape=(48, 56)
    )
    drr = project(vol, view, device="torch:cpu")
    ref = box_chords(vol, view)
    hit = ref > 0
    err = np.abs(drr - ref)
    h = vol.spacing.max()
    assert np.median(err[hit]) < 0.1 * h
    assert np.percentile(err[hit], 99) < 1.5 * h
    assert err.max() < 4 * h
    long = ref > 5 * h
    assert (err[long] / ref[long]).mean() < 0.005


def test_torch_path_is_repeatable_and_cpu_is_numba():
    vol = random_volume().crop((5, 7, 3), (50, 40, 55))
    view = carm_view(
        45, 15, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6, shape=(64, 64)
    )
    a = project(vol, view, device="torch:cpu")
    assert np.array_equal(a, project(vol, view, device="torch:cpu"))
    # "cpu" is the Numba projector itself, bitwise.
    assert np.array_equal(project(vol, view, device="cpu"), project(vol, view))


@pytest.mark.skipif(HAS_CUDA, reason="a GPU is there: the no-GPU error cannot happen")
def test_cuda_without_a_gpu_is_a_one_line_user_error():
    vol = random_volume((8, 8, 8))
    view = carm_view(0, 0, shape=(4, 4))
    with pytest.raises(DeviceError, match=r"^device cuda: CUDA is not available \(") as err:
        project(vol, view, device="cuda")
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_device_option_parsing():
    assert parse_device(None) is None and parse_device("cpu") is None
    assert parse_device("torch:cpu") == "cpu"
    with pytest.raises(DeviceError, match="^device gpu7: not a torch device"):
        parse_device("gpu7")


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("crop", [False, True])
def test_cuda_matches_numba(crop):
    vol = random_volume()
    if crop:
        vol = vol.crop((5, 7, 3), (50, 40, 55))
    for angles in CARM_VIEWS:
        view = carm_view(
            *angles, source_to_isocenter_mm=300, source_to_detector_mm=500, pixel_mm=1.6,
            shape=(64, 64),
        )  # fmt: skip
        out = agree(vol, view, "cuda")
        assert np.array_equal(out, project(vol, view, device="cuda"))  # repeatable on the GPU
    for axis in range(3):
        agree(vol, axis_view(vol, axis, 0.01), "cuda")
