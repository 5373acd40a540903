"""DICOM series: real files written slice by slice, read back through GDCM."""

import numpy as np
import pytest
import SimpleITK as sitk

from drrgen.errors import CTReadError
from drrgen.volume import Volume, list_dicom_series, read_ct, write_dicom_series


def test_round_trip_rotated_anisotropic(tmp_path, ct_volume):
    files = write_dicom_series(ct_volume, tmp_path / "series")
    assert len(files) == 9
    vol = read_ct(tmp_path / "series")
    np.testing.assert_allclose(vol.affine, ct_volume.affine, atol=1e-6)
    np.testing.assert_array_equal(vol.data, ct_volume.data)
    # Same frame as SimpleITK's own series reader.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list_dicom_series(tmp_path / "series")[0][1])
    image = reader.Execute()
    ijk = np.random.default_rng(0).uniform(0, 6, size=(10, 3))
    theirs = [image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk]
    np.testing.assert_allclose(vol.index_to_world(ijk), theirs, atol=1e-9)


def test_rescale_tags_and_stored_values(tmp_path, ct_volume):
    files = write_dicom_series(ct_volume, tmp_path / "s", rescale_intercept=-1024.0)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(files[0]))
    reader.ReadImageInformation()
    assert float(reader.GetMetaData("0028|1052")) == -1024.0
    assert float(reader.GetMetaData("0028|1053")) == 1.0
    assert reader.GetMetaData("0008|0060").strip() == "CT"
    spacing = [float(x) for x in reader.GetMetaData("0028|0030").split("\\")]
    np.testing.assert_allclose(spacing, ct_volume.spacing[[1, 0]], atol=1e-9)
    assert float(reader.GetMetaData("0018|0050")) == pytest.approx(ct_volume.spacing[2])


def test_left_handed_grid_is_stored_flipped_but_physically_equal(tmp_path, ct_volume):
    affine = ct_volume.affine.copy()
    affine[:3, 2] *= -1
    left = Volume(ct_volume.data, affine)
    write_dicom_series(left, tmp_path / "s")
    vol = read_ct(tmp_path / "s")
    ijk = np.random.default_rng(1).uniform(0, 6, size=(10, 3))
    flipped = ijk * [1, 1, -1] + [0, 0, 8]
    np.testing.assert_allclose(vol.index_to_world(flipped), left.index_to_world(ijk), atol=1e-6)
    np.testing.assert_array_equal(vol.data[::-1], left.data)


def test_several_series_need_a_series_id(tmp_path, ct_volume):
    write_dicom_series(ct_volume, tmp_path / "d", name="first")
    shifted = Volume(ct_volume.data + 5, ct_volume.affine)
    write_dicom_series(shifted, tmp_path / "d", name="second")
    series = list_dicom_series(tmp_path / "d")
    assert len(series) == 2 and all(len(files) == 9 for _, files in series)
    with pytest.raises(CTReadError, match="2 DICOM series") as info:
        read_ct(tmp_path / "d")
    for sid, _ in series:
        assert sid in str(info.value)
    means = sorted(read_ct(tmp_path / "d", series_id=sid).data.mean() for sid, _ in series)
    assert means[1] - means[0] == pytest.approx(5.0)
    with pytest.raises(CTReadError, match="no DICOM series 'bogus'"):
        read_ct(tmp_path / "d", series_id="bogus")


def test_missing_slice_is_reported(tmp_path, ct_volume):
    files = write_dicom_series(ct_volume, tmp_path / "s")
    files[4].unlink()
    with pytest.raises(CTReadError, match="non-uniform slice spacing"):
        read_ct(tmp_path / "s")


def test_empty_and_garbage_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CTReadError, match="no DICOM series found"):
        read_ct(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    for n in range(3):
        (bad / f"{n}.dcm").write_bytes(np.random.default_rng(n).bytes(4000))
    assert list_dicom_series(bad) == []
    with pytest.raises(CTReadError, match="no DICOM series found"):
        read_ct(bad)


def test_truncated_slice_is_reported(tmp_path, ct_volume):
    files = write_dicom_series(ct_volume, tmp_path / "s")
    blob = files[3].read_bytes()
    files[3].write_bytes(blob[: len(blob) - 40])
    with pytest.raises(CTReadError) as info:
        read_ct(tmp_path / "s")
    assert str(tmp_path / "s") in str(info.value)


def test_values_are_checked_for_series(tmp_path, ct_volume):
    air = Volume(np.full(ct_volume.data.shape, -1000, np.float32), ct_volume.affine)
    air.data[0, 0, :3] = -990
    write_dicom_series(air, tmp_path / "s")
    with pytest.raises(CTReadError, match="all-air"):
        read_ct(tmp_path / "s")


def test_single_slice_file_points_to_the_folder(tmp_path, ct_volume):
    files = write_dicom_series(ct_volume, tmp_path / "s")
    with pytest.raises(CTReadError, match="single DICOM slice"):
        read_ct(files[0])
