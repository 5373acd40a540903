"""Cheap sanity checks on CT inputs. Each raises `CTReadError` naming the file and the problem.

Header checks run before the voxel data is read; value checks take one pass over the data.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drrgen.errors import CTReadError

MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0
MIN_VOXELS_PER_AXIS = 4
AIR_MAX_HU = -900.0


def check_geometry(path, size_ijk, spacing_mm, direction) -> None:
    """Reject grids that cannot be a CT.

    Args:
        path: file or directory, for the message.
        size_ijk: (3,) voxels along i, j, k.
        spacing_mm: (3,) voxel size in mm along i, j, k.
        direction: (3, 3) direction cosines (columns = index axes in LPS).

    Raises:
        CTReadError: an axis with fewer than 4 voxels, spacing <= 0, < 0.01 mm or > 50 mm,
            non-finite or singular direction cosines.
    """
    size = [int(s) for s in size_ijk]
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if min(size) < MIN_VOXELS_PER_AXIS:
        raise CTReadError(
            path,
            f"volume too small: size (i, j, k) = {tuple(size)}, every axis needs "
            f">= {MIN_VOXELS_PER_AXIS} voxels",
        )
    sp = tuple(float(s) for s in spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise CTReadError(path, f"absurd spacing {sp} mm: must be finite and positive")
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise CTReadError(
            path, f"absurd spacing {sp} mm: expected {MIN_SPACING_MM} to {MAX_SPACING_MM} mm"
        )
    direction = np.asarray(direction, dtype=np.float64)
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise CTReadError(path, f"degenerate direction cosines {direction.ravel().tolist()}")


def check_values(path, data: np.ndarray) -> None:
    """Reject voxel data that is not a usable CT in HU.

    Args:
        path: file or directory, for the message.
        data: (nk, nj, ni) float32 HU.

    Raises:
        CTReadError: NaN or infinite values, a constant volume, or an all-air volume
            (maximum below -900 HU).
    """
    lo, hi = float(np.min(data)), float(np.max(data))  # NaN propagates through min/max
    if not (np.isfinite(lo) and np.isfinite(hi)):
        n_nan = int(np.count_nonzero(np.isnan(data)))
        n_inf = int(np.count_nonzero(np.isinf(data)))
        raise CTReadError(
            path, f"non-finite values: {n_nan} NaN and {n_inf} infinite of {data.size} voxels"
        )
    if lo == hi:
        raise CTReadError(path, f"empty volume: every voxel equals {lo:g}")
    if hi < AIR_MAX_HU:
        raise CTReadError(
            path, f"all-air volume: maximum {hi:g} HU is below {AIR_MAX_HU:g} HU (nothing to image)"
        )


# NIfTI datatype codes of floating-point voxels -> numpy dtype (complex types are rejected earlier).
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI file's voxels lie: byte offset, byte count, float dtype (None if integer)."""

    offset: int
    n_bytes: int
    float_dtype: np.dtype | None


def _nifti_layout(header: bytes) -> _NiftiLayout | None:
    """Parse the voxel layout from a NIfTI-1 or NIfTI-2 header; None if it is neither."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = max(int(struct.unpack(endian + "f", header[108:112])[0]), 348)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = max(struct.unpack(endian + "q", header[168:176])[0], 540)
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]], dtype=np.int64))
    code = _NIFTI_FLOATS.get(datatype)
    dtype = np.dtype(endian + code) if code else None
    return _NiftiLayout(offset, n_voxels * bitpix // 8, dtype)


def _scan_floats(stream, layout: _NiftiLayout) -> tuple[int, int, int]:
    """Read the voxel bytes from `stream` in chunks: (bytes read, NaN count, inf count)."""
    stream.seek(layout.offset)
    chunk = (1 << 22) // layout.float_dtype.itemsize * layout.float_dtype.itemsize
    total = n_nan = n_inf = 0
    while total < layout.n_bytes and (buf := stream.read(min(chunk, layout.n_bytes - total))):
        total += len(buf)
        values = np.frombuffer(
            buf[: len(buf) // layout.float_dtype.itemsize * layout.float_dtype.itemsize],
            dtype=layout.float_dtype,
        )
        if not np.isfinite(values).all():
            n_nan += int(np.count_nonzero(np.isnan(values)))
            n_inf += int(np.count_nonzero(np.isinf(values)))
    return total, n_nan, n_inf


def _gzip_stream_length(path: Path) -> int:
    """Decompressed length of a (multi-member) gzip file; raises EOFError if it ends early."""
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            total += len(chunk)
    return total


def _gzip_isize(path: Path) -> int:
    """The gzip trailer's ISIZE: uncompressed length of the last member modulo 2**32."""
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0]


def check_nifti_payload(path) -> None:
    """Checks on NIfTI voxel data that ITK hides: truncation and non-finite floats.

    ITK pads a truncated NIfTI with zeros and its NIfTI library replaces NaN and inf by 0, so
    both are checked on the raw file. Integer data: the size implied by the header is compared
    with the file size (``.nii``) or the gzip trailer (``.nii.gz``), O(1). Float data: the voxel
    bytes are scanned once in 4 MiB chunks (one extra decompression for ``.nii.gz``).

    Args:
        path: a ``.nii`` or ``.nii.gz`` file whose header SimpleITK has already parsed.

    Raises:
        CTReadError: the file holds less voxel data than its header declares, or NaN/inf values.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            layout = _nifti_layout(f.read(540))
            if layout is None:
                return  # not a header we understand; SimpleITK accepted it, so let it decide
            expected = layout.offset + layout.n_bytes
            if layout.float_dtype is not None:
                got, n_nan, n_inf = _scan_floats(f, layout)
                got += layout.offset
            elif opener is open:
                got, n_nan, n_inf = path.stat().st_size, 0, 0
            elif _gzip_isize(path) == expected % (1 << 32):
                got, n_nan, n_inf = expected, 0, 0
            else:
                got, n_nan, n_inf = _gzip_stream_length(path), 0, 0
    except (EOFError, OSError, zlib.error) as e:
        raise CTReadError(path, f"truncated or corrupt file: {e}") from e
    if got < expected:
        raise CTReadError(
            path, f"truncated file: {got} bytes of data, the header declares {expected}"
        )
    if n_nan or n_inf:
        raise CTReadError(
            path,
            f"non-finite values: {n_nan} NaN and {n_inf} infinite of "
            f"{layout.n_bytes // layout.float_dtype.itemsize} voxels",
        )
