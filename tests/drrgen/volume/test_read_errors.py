"""Bad CT inputs raise `CTReadError` naming the file and the specific problem."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from drrgen.errors import CTReadError
from drrgen.volume import Volume, read_ct, write_ct


def _write_array(path, data, spacing=(1.0, 1.0, 1.0), is_vector=False):
    image = sitk.GetImageFromArray(np.asarray(data), isVector=is_vector)
    if not is_vector:
        image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))
    return path


def _phantom_hu(shape=(8, 8, 8)):
    data = np.full(shape, -1000.0, np.float32)
    data[2:-2, 2:-2, 2:-2] = 40.0
    return data


def _expect(path, *words):
    with pytest.raises(CTReadError) as info:
        read_ct(path)
    message = str(info.value)
    assert str(path) in message and info.value.path == str(path)
    for word in words:
        assert word in message.lower(), message
    return info.value


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.nii.gz", "no such file")


@pytest.mark.parametrize("suffix", ["nii.gz", "nii"])
def test_truncated_nifti(tmp_path, suffix):
    # ITK silently pads truncated NIfTI voxel data with zeros; we must not.
    path = _write_array(
        tmp_path / f"ct.{suffix}", np.random.default_rng(0).normal(size=(20, 30, 40))
    )
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    _expect(path, "truncated")


@pytest.mark.parametrize("suffix", ["nrrd", "mha"])
def test_truncated_other_formats(tmp_path, suffix):
    path = tmp_path / f"ct.{suffix}"
    write_ct(Volume(np.random.default_rng(0).normal(size=(20, 30, 40)), np.eye(4)), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    _expect(path, "unreadable or truncated")


def test_header_cut_short(tmp_path):
    path = _write_array(tmp_path / "ct.nii", _phantom_hu())
    path.write_bytes(path.read_bytes()[:100])
    _expect(path, "not a readable image")


def test_png_renamed_as_nifti(tmp_path):
    png = _write_array(tmp_path / "x.png", np.zeros((20, 30), np.uint8))
    fake = tmp_path / "x.nii.gz"
    shutil.copy(png, fake)
    _expect(fake, "not a ct volume", "png")


def test_real_png(tmp_path):
    _expect(
        _write_array(tmp_path / "x.png", np.zeros((20, 30), np.uint8)), "not a ct volume", "png"
    )


def test_random_bytes(tmp_path):
    path = tmp_path / "x.mha"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    _expect(path, "not a readable image")


def test_2d_image(tmp_path):
    _expect(_write_array(tmp_path / "x.nii.gz", np.zeros((20, 30), np.float32)), "not 3-d", "2-d")


def test_4d_with_several_time_points(tmp_path):
    frames = [sitk.GetImageFromArray(_phantom_hu()) for _ in range(3)]
    path = tmp_path / "x.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    _expect(path, "not 3-d", "4-d", "3 volumes")


def test_vector_pixels(tmp_path):
    data = np.zeros((8, 8, 8, 3), np.float32)
    _expect(
        _write_array(tmp_path / "x.nrrd", data, is_vector=True), "multi-component", "3 per voxel"
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "mha", "nrrd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite(tmp_path, bad, suffix, dtype):
    # ITK's NIfTI library turns NaN/inf into 0 on reading: the raw voxels must be checked.
    data = _phantom_hu().astype(dtype)
    data[3, 4, 5] = bad
    error = _expect(_write_array(tmp_path / f"x.{suffix}", data), "non-finite", "of 512 voxels")
    assert ("1 NaN" in error.reason) == bool(np.isnan(bad))


def test_all_air(tmp_path):
    data = np.random.default_rng(0).uniform(-1024, -950, size=(8, 8, 8)).astype(np.float32)
    _expect(_write_array(tmp_path / "x.mha", data), "all-air", "-900")


def test_constant(tmp_path):
    _expect(_write_array(tmp_path / "x.mha", np.full((8, 8, 8), 40.0, np.float32)), "empty", "40")


@pytest.mark.parametrize("spacing", [(0.001, 1.0, 1.0), (1.0, 1.0, 60.0)])
def test_absurd_spacing(tmp_path, spacing):
    _expect(_write_array(tmp_path / "x.nii.gz", _phantom_hu(), spacing), "absurd spacing")


@pytest.mark.parametrize("spacing", ["0 1 1", "1 -1 1"])
def test_non_positive_spacing(tmp_path, spacing):
    # SimpleITK refuses to create such images, so write a MetaImage header by hand.
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"ElementSpacing = {spacing}\nDimSize = 8 8 8\nElementType = MET_FLOAT\n"
        "ElementDataFile = LOCAL\n"
    )
    path = tmp_path / "x.mha"
    path.write_bytes(header.encode() + _phantom_hu().tobytes())
    _expect(path, "absurd spacing", "positive")


@pytest.mark.parametrize("shape", [(3, 8, 8), (8, 8, 2)])
def test_tiny_volume(tmp_path, shape):
    data = np.zeros(shape, np.float32)
    data.flat[0] = 100
    _expect(_write_array(tmp_path / "x.nii.gz", data), "too small", "4 voxels")


def test_valid_volume_passes(tmp_path):
    vol = read_ct(_write_array(tmp_path / "x.nii.gz", _phantom_hu()))
    assert vol.data.max() == 40.0
