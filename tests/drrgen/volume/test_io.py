"""Round trips through every format keep data and geometry exactly as SimpleITK reports them."""

import numpy as np
import pytest
import SimpleITK as sitk

from drrgen.volume import Volume, is_ct_file, read_ct, write_ct
from drrgen.volume.io import volume_to_image


def _sitk_points(image: sitk.Image, ijk: np.ndarray) -> np.ndarray:
    return np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "nrrd", "mha"])
def test_write_read_matches_simpleitk(tmp_path, ct_volume, suffix):
    path = write_ct(ct_volume, tmp_path / f"ct.{suffix}")
    vol = read_ct(path)
    image = sitk.ReadImage(str(path))
    ijk = np.random.default_rng(2).uniform(-1, 9, size=(20, 3))
    # What we report is exactly what SimpleITK reports (NIfTI's RAS storage included).
    np.testing.assert_allclose(vol.index_to_world(ijk), _sitk_points(image, ijk), atol=1e-9)
    # And it is the volume we wrote (NIfTI stores float32 coordinates).
    np.testing.assert_allclose(vol.affine, ct_volume.affine, atol=1e-4)
    np.testing.assert_array_equal(vol.data, ct_volume.data)
    assert vol.data.dtype == np.float32 and vol.data.shape == (9, 7, 6)
    assert vol.shape_ijk == (6, 7, 9)
    assert vol.source == str(path)


def test_affine_is_direction_times_spacing_plus_origin(tmp_path, ct_volume):
    path = write_ct(ct_volume, tmp_path / "ct.mha")
    image = sitk.ReadImage(str(path))
    vol = read_ct(path)
    d = np.array(image.GetDirection()).reshape(3, 3)
    np.testing.assert_array_equal(vol.affine[:3, :3], d @ np.diag(image.GetSpacing()))
    np.testing.assert_array_equal(vol.affine[:3, 3], image.GetOrigin())
    np.testing.assert_array_equal(vol.affine[3], [0, 0, 0, 1])


def test_data_order_is_k_j_i(tmp_path):
    data = np.zeros((5, 6, 7), np.float32) - 1000
    data[4, 1, 2] = 1000.0  # voxel (i, j, k) = (2, 1, 4)
    image = sitk.GetImageFromArray(data)
    image.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "a.nrrd"))
    vol = read_ct(tmp_path / "a.nrrd")
    assert vol.shape_ijk == (7, 6, 5)
    assert image.GetPixel(2, 1, 4) == vol.data[4, 1, 2] == 1000.0
    np.testing.assert_allclose(vol.index_to_world([2, 1, 4]), [12.0, -19.0, 34.0])


@pytest.mark.parametrize("suffix", ["mhd", "nhdr"])
def test_detached_header_formats(tmp_path, ct_volume, suffix):
    path = tmp_path / f"ct.{suffix}"
    sitk.WriteImage(volume_to_image(ct_volume), str(path))
    vol = read_ct(path)
    np.testing.assert_array_equal(vol.data, ct_volume.data)
    np.testing.assert_allclose(vol.affine, ct_volume.affine, atol=1e-9)


def test_int16_is_converted_to_float32(tmp_path):
    data = np.arange(-1000, 1000, 10, dtype=np.int16)[:200].reshape(5, 5, 8)
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "a.nii.gz"))
    vol = read_ct(tmp_path / "a.nii.gz")
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, data.astype(np.float32))


def test_trailing_singleton_fourth_axis_is_squeezed(tmp_path, ct_volume):
    image = sitk.JoinSeries([volume_to_image(ct_volume)])  # 4-D, size (6, 7, 9, 1)
    assert image.GetDimension() == 4
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    vol = read_ct(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(vol.data, ct_volume.data)
    np.testing.assert_allclose(vol.affine, ct_volume.affine, atol=1e-4)


def test_write_rejects_unknown_suffix(tmp_path, ct_volume):
    with pytest.raises(ValueError, match="cannot write"):
        write_ct(ct_volume, tmp_path / "a.png")


def test_is_ct_file():
    assert is_ct_file("a/B.NII.GZ") and is_ct_file("x.nhdr") and is_ct_file("x.mhd")
    assert not is_ct_file("x.png") and not is_ct_file("x.gz")


def test_volume_to_image_keeps_geometry(ct_volume):
    image = volume_to_image(ct_volume)
    ijk = np.random.default_rng(3).uniform(0, 5, size=(10, 3))
    np.testing.assert_allclose(_sitk_points(image, ijk), ct_volume.index_to_world(ijk), atol=1e-9)


def test_write_int16_rounds_hu(tmp_path, ct_volume):
    data = ct_volume.data + np.float32(0.3)
    vol = read_ct(write_ct(Volume(data, ct_volume.affine), tmp_path / "a.nii.gz", dtype="int16"))
    np.testing.assert_array_equal(vol.data, np.rint(data))
    assert sitk.ReadImage(str(tmp_path / "a.nii.gz")).GetPixelID() == sitk.sitkInt16
    with pytest.raises(ValueError, match="dtype"):
        write_ct(ct_volume, tmp_path / "b.nii.gz", dtype="uint8")
