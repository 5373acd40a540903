"""DICOM radiographs (CR, DX and other projection X-rays, one frame) for `xmatch match`.

The stored values become grey values where bone is bright, in the order the DICOM standard
defines for display:

1. stored values, BitsStored respected (pydicom masks the unused high bits and sign-extends
   signed data);
2. the modality LUT: RescaleSlope / RescaleIntercept or a Modality LUT Sequence
   (`pydicom.pixels.apply_modality_lut`);
3. the VOI LUT: a VOI LUT Sequence, else the first WindowCenter / WindowWidth
   (`pydicom.pixels.apply_voi_lut`); without either nothing here, and the matcher's robust
   0.5-99.5 percentile window does the job;
4. MONOCHROME1 (high values dark): values negated, so that bone is bright as in MONOCHROME2
   and in the model's training images.

PixelSpacing and ImagerPixelSpacing are read (row, col mm) and reported, never used to
resample: the model sees the whole field of view at its own input size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from drrgen.errors import UserError
from xmatch_train.match.images import Radiograph

# Projection X-ray modalities: computed / digital radiography, digital radiography (a
# frequent non-standard code), radiographic imaging, mammography, intra-oral and panoramic
# X-ray, angiography and fluoroscopy single frames; OT (other) for secondary captures.
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG", "MG", "IO", "PX", "XA", "RF", "OT")


def read_dicom(path: str | Path) -> Radiograph:
    """Read one single-frame greyscale projection radiograph.

    Raises:
        UserError: unreadable file, no pixel data, several frames, colour, a modality that is
            not a projection X-ray (CT, MR, ...), pixel data pydicom cannot decode.
    """
    import pydicom

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's notes on non-conformant files
            ds = pydicom.dcmread(path, force=True)
    except Exception as err:
        raise UserError(f"{path}: cannot read as DICOM ({type(err).__name__}: {err})") from None
    check_radiograph(ds, path)
    values = _values(ds, path)  # (H, W) float64
    inverted = _inverse(ds)
    return Radiograph(
        pixels=(-values if inverted else values).astype(np.float32),
        path=str(path),
        format="dicom",
        bits=int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0) or None,
        photometric=str(ds.get("PhotometricInterpretation", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        pixel_spacing_mm=_spacing(ds, "PixelSpacing"),
        imager_pixel_spacing_mm=_spacing(ds, "ImagerPixelSpacing"),
        inverted=inverted,
        voi=_voi_name(ds),
    )


def check_radiograph(ds, path: Path) -> None:
    """Refuse what is not one grey projection X-ray frame (one line naming the file)."""
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise UserError(f"{path}: cannot read as DICOM (no image attributes found; damaged?)")
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UserError(f"{path}: DICOM without pixel data (not an image)")
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise UserError(
            f"{path}: DICOM modality {modality} is not a projection radiograph "
            f"(expected one of {', '.join(RADIOGRAPH_MODALITIES)}); xmatch match takes two "
            "X-ray views, not a CT/MR slice"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise UserError(
            f"{path}: multi-frame DICOM ({frames} frames); export the frame to match as its "
            "own file"
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise UserError(
            f"{path}: colour DICOM (SamplesPerPixel {samples}, "
            f"{ds.get('PhotometricInterpretation', '?')}); expected a greyscale radiograph"
        )


def _values(ds, path: Path) -> np.ndarray:
    """Stored values through the modality and VOI LUTs, (H, W) float64."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        stored = ds.pixel_array
    except Exception as err:
        raise UserError(
            f"{path}: cannot decode the pixel data ({type(err).__name__}: {err})"
        ) from None
    if stored.ndim != 2:
        raise UserError(f"{path}: pixel data of shape {stored.shape}; expected one 2-D frame")
    values = apply_modality_lut(stored, ds)
    if _voi_name(ds) is not None:
        values = apply_voi_lut(values, ds, index=0)
    return np.asarray(values, dtype=np.float64)


def _voi_name(ds) -> str | None:
    """The VOI transform the file asks for, as recorded in ``matches.json``."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return "VOI LUT"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        return f"window {centre:g}/{width:g}"
    return None


def _first(value) -> float:
    """The first of a multi-valued element (files often carry several windows)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _inverse(ds) -> bool:
    """High values are dark: MONOCHROME1. (A Presentation LUT Shape ``INVERSE`` in a DX file
    describes that same inversion, the standard asks for it with MONOCHROME1: not applied
    twice.)"""
    return str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"


def _spacing(ds, keyword: str) -> tuple[float, float] | None:
    """(row, col) spacing in mm, None when absent or malformed."""
    value = ds.get(keyword)
    try:
        row, col = (float(x) for x in value)
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None
