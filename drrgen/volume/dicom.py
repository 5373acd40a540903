"""DICOM series: list and read the series of a directory, and write a volume as a CT series.

Reading goes through SimpleITK's GDCM series reader, which sorts slices along the slice normal
by ImagePositionPatient. Each series (SeriesInstanceUID) of a directory is one volume.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from drrgen.errors import CTReadError
from drrgen.volume.volume import Volume

_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def list_dicom_series(directory) -> list[tuple[str, list[str]]]:
    """The DICOM series stored directly in `directory` (sub-directories are not searched).

    Args:
        directory: a folder of DICOM files.

    Returns:
        [(series_id, files)] with files sorted along the slice normal; empty when the folder
        holds no readable DICOM series.
    """
    directory = str(directory)
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(directory)
    return [
        (sid, list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(directory, sid))) for sid in ids
    ]


def read_dicom_series(directory, series_id: str | None = None) -> sitk.Image:
    """Read one DICOM series of `directory` as a SimpleITK image (rescale slope/intercept applied).

    Args:
        directory: a folder of DICOM files.
        series_id: which SeriesInstanceUID to read; may be omitted when the folder holds one.

    Raises:
        CTReadError: no series, several series and no `series_id`, an unknown `series_id`,
            unreadable slices, or a non-uniform slice spacing (missing slices).
    """
    series = dict(list_dicom_series(directory))
    if not series:
        raise CTReadError(
            directory, "no DICOM series found in this directory (sub-directories are not searched)"
        )
    if series_id is None:
        if len(series) > 1:
            raise CTReadError(
                directory,
                f"{len(series)} DICOM series in this directory; choose one with series_id=: "
                + ", ".join(series),
            )
        series_id = next(iter(series))
    if series_id not in series:
        raise CTReadError(
            directory, f"no DICOM series {series_id!r} here; available: " + ", ".join(series)
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[series_id])
    reader.MetaDataDictionaryArrayUpdateOn()  # keeps each slice's ImagePositionPatient
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CTReadError(
            directory, f"cannot read DICOM series {series_id}: {sitk_reason(e)}"
        ) from e
    positions = [_slice_position(reader, n) for n in range(len(series[series_id]))]
    if image.GetDimension() == 3 and None not in positions:
        _check_slice_positions(directory, series_id, np.array(positions), image)
    return image


def _slice_position(reader: sitk.ImageSeriesReader, n: int) -> list[float] | None:
    """ImagePositionPatient (3,) mm of slice `n`, or None when absent or unparsable."""
    try:
        return [float(x) for x in reader.GetMetaData(n, "0020|0032").split("\\")][:3]
    except (RuntimeError, ValueError):
        return None


def _check_slice_positions(directory, series_id, positions: np.ndarray, image) -> None:
    """Reject stacks a regular grid cannot represent: gaps, duplicates, gantry tilt.

    ITK flags any deviation (even rounding) without saying how large, so measure it here.

    Args:
        positions: (n, 3) ImagePositionPatient of the slices in series order, LPS mm.
        image: the series as read; its direction's third column is the slice normal.
    """
    if len(positions) < 2:
        return
    normal = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    along = (positions - positions[0]) @ normal
    gaps = np.diff(along)
    deviation = float(np.max(np.abs(gaps - spacing[2])))
    if deviation > 0.1 * spacing[2]:
        raise CTReadError(
            directory,
            f"DICOM series {series_id} has non-uniform slice spacing (missing or duplicate "
            f"slices?): gaps from {gaps.min():.4g} to {gaps.max():.4g} mm",
        )
    sideways = positions - positions[0] - along[:, None] * normal
    shift = float(np.max(np.linalg.norm(sideways, axis=1)))
    if shift > 0.1 * min(spacing[0], spacing[1]) + 1e-3:
        raise CTReadError(
            directory,
            f"DICOM series {series_id}: slices are offset sideways by up to {shift:.3g} mm "
            "(gantry tilt or sheared stack); resample it to an orthogonal grid first",
        )


def sitk_reason(error: Exception) -> str:
    """The informative lines of a SimpleITK/ITK exception, without source paths."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    keep = [
        ln
        for ln in lines
        if ln
        and not ln.startswith(("Exception thrown in SimpleITK", "/"))
        and "sitk::ERROR" not in ln
    ]
    text = " ".join(keep) or str(error).strip()
    return re.sub(r"\(0x[0-9a-fA-F]+\)", "", text)[:400]


def _uid(*parts) -> str:
    """A deterministic DICOM UID under the UUID root 2.25 (at most 64 characters)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16]
    return "2.25." + str(uuid.UUID(bytes=digest).int)


def _ds(values) -> str:
    """Format numbers as a DICOM decimal string (each value at most 16 characters)."""
    out = []
    for x in np.ravel(values):
        for digits in range(15, 0, -1):
            s = f"{float(x):.{digits}g}"
            if len(s) <= 16:
                break
        out.append(s)
    return "\\".join(out)


def _right_handed(volume: Volume) -> Volume:
    """The same physical image with k reversed if needed so that k = i x j (as DICOM stacks)."""
    d = volume.direction
    if np.linalg.det(d) > 0:
        out = volume
    else:
        affine = volume.affine.copy()
        affine[:3, 3] = volume.index_to_world([0.0, 0.0, volume.shape_ijk[2] - 1.0])
        affine[:3, 2] *= -1
        out = Volume(volume.data[::-1], affine, volume.source)
    d = out.direction
    if not np.allclose(d[:, 2], np.cross(d[:, 0], d[:, 1]), atol=1e-6):
        raise ValueError("DICOM needs orthonormal direction cosines; this volume is sheared")
    return out


def write_dicom_series(
    volume: Volume,
    directory,
    *,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    name: str = "drrgen",
) -> list[Path]:
    """Write an HU volume as a CT DICOM series, one file per k slice.

    Each slice carries ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
    SliceThickness, RescaleSlope/Intercept and deterministic UIDs derived from `name`. Values
    are rounded to integer HU; stored pixels are ``(HU - intercept) / slope``. A left-handed
    grid is written with k reversed (DICOM stacks slices along i x j); the physical image is
    unchanged.

    Args:
        volume: (nk, nj, ni) HU volume with orthonormal direction cosines.
        directory: output folder (created).
        rescale_slope: DICOM RescaleSlope.
        rescale_intercept: DICOM RescaleIntercept, HU.
        name: seeds the Study/Series/SOP instance UIDs and the SeriesDescription.

    Returns:
        The written files, in slice order.
    """
    vol = _right_handed(volume)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    d, spacing = vol.direction, vol.spacing
    hu = np.rint(vol.data).astype(np.int16)
    study, series = _uid(name, "study"), _uid(name, "series")
    common = {
        "0008|0016": _CT_IMAGE_STORAGE,
        "0008|0060": "CT",
        "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
        "0008|103e": name[:64],
        "0020|000d": study,
        "0020|000e": series,
        "0020|0037": _ds(np.concatenate([d[:, 0], d[:, 1]])),
        "0018|0050": _ds(spacing[2]),
        "0028|1053": _ds(rescale_slope),
        "0028|1052": _ds(rescale_intercept),
        "0028|1054": "HU",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(hu.shape[0]):
        image = sitk.GetImageFromArray(hu[k])
        image.SetSpacing((float(spacing[0]), float(spacing[1])))
        for key, value in common.items():
            image.SetMetaData(key, value)
        image.SetMetaData("0008|0018", _uid(name, "slice", k))
        image.SetMetaData("0020|0013", str(k + 1))
        image.SetMetaData("0020|0032", _ds(vol.index_to_world([0.0, 0.0, float(k)])))
        path = directory / f"{name}_{k:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(image)
        files.append(path)
    return files
