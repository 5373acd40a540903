"""Read and write CT volumes with SimpleITK, keeping its physical frame (LPS, mm) exactly.

Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and DICOM series
directories. The `Volume` affine is what SimpleITK reports: ``affine[:3, :3] = D @ diag(spacing)``
and ``affine[:3, 3] = origin``; NIfTI's RAS storage is converted by SimpleITK, not by us.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from drrgen.errors import CTReadError
from drrgen.volume import checks
from drrgen.volume.dicom import read_dicom_series, sitk_reason
from drrgen.volume.volume import Volume

CT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_FORMATS = (
    "NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr), MetaImage (.mha/.mhd) or a DICOM series directory"
)
_VOLUME_IOS = {"NiftiImageIO", "NrrdImageIO", "MetaImageIO", "GDCMImageIO"}
_WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def is_ct_file(path) -> bool:
    """True when `path` has a CT file suffix read by `read_ct` (case-insensitive)."""
    return str(path).lower().endswith(CT_SUFFIXES)


def read_ct(path, series_id: str | None = None) -> Volume:
    """Read a CT volume in HU and validate it.

    Args:
        path: a NIfTI, NRRD or MetaImage file, or a directory holding a DICOM series.
        series_id: for a DICOM directory with several series, which SeriesInstanceUID to read
            (see `list_dicom_series`).

    Returns:
        A `Volume` with (nk, nj, ni) float32 HU data and the SimpleITK affine (LPS, mm).

    Raises:
        CTReadError: naming the file and the problem (missing, unreadable or truncated, not an
            image volume, not 3-D, multi-component, non-finite, empty or all-air, absurd
            spacing, fewer than 4 voxels on an axis).
    """
    path = Path(path)
    if not path.exists():
        raise CTReadError(path, "no such file or directory")
    if path.is_dir():
        image = read_dicom_series(path, series_id)
        _check_image_header(path, image.GetDimension(), image.GetSize(), image)
    else:
        image = _read_image_file(path)
    return _to_volume(path, image)


def _read_image_file(path: Path) -> sitk.Image:
    """Read one file with header checks before the voxel data is loaded."""
    io_name = sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    if not io_name:
        raise CTReadError(
            path, f"not a readable image: no reader recognises it; expected {_FORMATS}"
        )
    if io_name not in _VOLUME_IOS:
        kind = io_name.removesuffix("ImageIO")
        raise CTReadError(path, f"not a CT volume: the file is a {kind} image; expected {_FORMATS}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(io_name)
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise CTReadError(path, f"unreadable header: {sitk_reason(e)}") from e
    size = reader.GetSize()
    if io_name == "GDCMImageIO" and (reader.GetDimension() < 3 or size[2] == 1):
        raise CTReadError(
            path, "a single DICOM slice, not a volume: pass the folder that holds the series"
        )
    _check_image_header(path, reader.GetDimension(), size, reader)
    if io_name == "NiftiImageIO":
        checks.check_nifti_payload(path)  # ITK pads truncated NIfTI data with zeros
    try:
        return reader.Execute()
    except RuntimeError as e:
        raise CTReadError(path, f"unreadable or truncated file: {sitk_reason(e)}") from e


def _check_image_header(path: Path, ndim: int, size, info) -> None:
    """Dimension, pixel type and geometry checks; `info` is a reader or an image."""
    size = tuple(int(s) for s in size)
    if ndim < 3:
        raise CTReadError(path, f"not 3-D: a {ndim}-D image of size {size}; a CT must be 3-D")
    if ndim > 3 and any(s != 1 for s in size[3:]):
        raise CTReadError(
            path,
            f"not 3-D: a {ndim}-D image of size {size} ({int(np.prod(size[3:]))} volumes or "
            "time points); a CT must be a single 3-D volume",
        )
    if isinstance(info, sitk.Image):
        n_comp = info.GetNumberOfComponentsPerPixel()
    else:
        n_comp = info.GetNumberOfComponents()
    pixel = sitk.GetPixelIDValueAsString(info.GetPixelID())
    if n_comp != 1 or "complex" in pixel or "vector" in pixel or "label" in pixel:
        raise CTReadError(
            path,
            f"multi-component pixels ({pixel}, {n_comp} per voxel); a CT has one scalar per voxel",
        )
    spacing = np.asarray(info.GetSpacing(), dtype=np.float64)[:3]
    direction = np.asarray(info.GetDirection(), dtype=np.float64).reshape(ndim, ndim)[:3, :3]
    checks.check_geometry(path, size[:3], spacing, direction)


def _to_volume(path: Path, image: sitk.Image) -> Volume:
    """SimpleITK image (3-D, or 4-D+ with trailing singleton axes) -> validated HU `Volume`."""
    ndim = image.GetDimension()
    data = sitk.GetArrayViewFromImage(image)
    data = data.reshape(data.shape[ndim - 3 :]).astype(np.float32)  # [t...,] k, j, i -> k, j, i
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:3]
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    checks.check_values(path, data)
    return Volume(data, affine, str(path))


def volume_to_image(volume: Volume, dtype: str = "float32") -> sitk.Image:
    """The `Volume` as a 3-D SimpleITK image with the same origin, spacing and direction.

    Args:
        volume: (nk, nj, ni) volume.
        dtype: "float32", or "int16" (values rounded and clipped to the int16 range).
    """
    if dtype == "float32":
        data = volume.data
    elif dtype == "int16":
        data = np.clip(np.rint(volume.data), -32768, 32767).astype(np.int16)
    else:
        raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
    image = sitk.GetImageFromArray(data)
    image.SetSpacing(tuple(float(s) for s in volume.spacing))
    image.SetDirection(tuple(float(x) for x in volume.direction.ravel()))
    image.SetOrigin(tuple(float(x) for x in volume.origin))
    return image


def write_ct(volume: Volume, path, *, dtype: str = "float32", compress: bool = True) -> Path:
    """Write a volume as NIfTI (.nii/.nii.gz), NRRD (.nrrd) or MetaImage (.mha).

    The physical frame is kept as SimpleITK represents it (NIfTI stores float32 RAS
    coordinates, so positions round-trip to about 1e-4 mm there).

    Args:
        volume: (nk, nj, ni) volume with its affine (LPS, mm).
        path: output file; the suffix picks the format. Parent folders are created.
        dtype: voxel type on disk: "float32" (exact) or "int16" (HU rounded to integers,
            about a third of the size once compressed).
        compress: compress the voxel data (.nii is never compressed; use .nii.gz).

    Returns:
        The written path.
    """
    path = Path(path)
    if not str(path).lower().endswith(_WRITE_SUFFIXES):
        raise ValueError(
            f"{path}: cannot write this format; use one of {', '.join(_WRITE_SUFFIXES)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume_to_image(volume, dtype), str(path), useCompression=compress)
    return path
