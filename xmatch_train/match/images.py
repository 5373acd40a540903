"""Read one X-ray image for `xmatch match`: PNG, JPEG or TIFF (8 or 16 bit) or a DICOM CR/DX
single frame, as float pixels where **bone is bright** (higher = more attenuation).

That is the polarity of the model's training images: a DRR in a store is a line integral of
mu (air 0, bone high), i.e. a radiograph after the detector's log conversion. A PNG/JPEG/TIFF is
taken as it is displayed (bone bright, as MURA and most exports); DICOM goes through
`xmatch_train.match.dicom` (modality LUT, VOI LUT or window, MONOCHROME1 inverted).

Every problem with a file is a `drrgen.errors.UserError` naming it (one line ``error: <file>:
<reason>`` on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from drrgen.errors import UserError

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


@dataclass(frozen=True)
class Radiograph:
    """One image as read, before any resizing or windowing.

    Attributes:
        pixels: (H, W) float32, bone bright.
        path: the file.
        format: ``png``, ``jpeg``, ``tiff``, ``dicom``, ... (lower case).
        bits: bits per sample as stored (DICOM: BitsStored), None for float images.
        photometric: DICOM PhotometricInterpretation or the PIL mode.
        modality: DICOM Modality (None for other formats).
        pixel_spacing_mm: (row, col) DICOM PixelSpacing (calibrated to the patient), or None.
        imager_pixel_spacing_mm: (row, col) DICOM ImagerPixelSpacing (at the detector), or None.
        inverted: the stored values were negated to make bone bright (MONOCHROME1, or
            ``invert=True``).
        voi: the VOI transform applied (``VOI LUT``, ``window C/W``), or None.
    """

    pixels: np.ndarray
    path: str
    format: str
    bits: int | None = None
    photometric: str | None = None
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    imager_pixel_spacing_mm: tuple[float, float] | None = None
    inverted: bool = False
    voi: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) pixels."""
        return tuple(self.pixels.shape)

    def info(self) -> dict:
        """What ``matches.json`` records about the image (plain JSON values)."""
        return dict(
            path=self.path,
            format=self.format,
            shape=list(self.shape),
            bits=self.bits,
            photometric=self.photometric,
            modality=self.modality,
            pixel_spacing_mm=_listed(self.pixel_spacing_mm),
            imager_pixel_spacing_mm=_listed(self.imager_pixel_spacing_mm),
            inverted=self.inverted,
            voi=self.voi,
        )


def _listed(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [float(x) for x in pair]


def is_dicom(path: Path) -> bool:
    """A DICOM suffix, or the ``DICM`` magic after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def read_image(path: str | Path, invert: bool = False) -> Radiograph:
    """Read `path` (PNG, JPEG, TIFF or DICOM) as a `Radiograph`.

    Args:
        path: the image file.
        invert: negate the values (for an image whose bone is dark).

    Raises:
        UserError: missing or unreadable file, several frames or pages, colour DICOM, a DICOM
            of another modality than a projection radiograph, a constant or non-finite image.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {'is a folder' if path.is_dir() else 'file not found'}")
    if is_dicom(path):
        from xmatch_train.match.dicom import read_dicom

        image = read_dicom(path)
    else:
        image = _read_pil(path)
    if invert:
        image = _negated(image)
    check_pixels(image.pixels, path)
    return image


def _negated(image: Radiograph) -> Radiograph:
    from dataclasses import replace

    return replace(image, pixels=-image.pixels, inverted=not image.inverted)


def check_pixels(pixels: np.ndarray, path: Path) -> None:
    """Refuse images the model cannot use (naming `path`)."""
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise UserError(f"{path}: image of shape {pixels.shape}; expected a 2-D grey image")
    if not np.isfinite(pixels).all():
        raise UserError(f"{path}: image holds NaN or infinite values")
    if float(pixels.max()) == float(pixels.min()):
        raise UserError(f"{path}: constant image (every pixel is {float(pixels.min()):g})")


# PIL modes -> bits per sample of the stored grey values
_GREY_BITS = {"1": 1, "L": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32}


def _read_pil(path: Path) -> Radiograph:
    """PNG / JPEG / TIFF (anything PIL reads, one frame) as grey float32.

    Colour images are converted to their luminance (ITU-R 601), as X-rays saved in RGB carry
    the same grey in every channel up to compression.
    """
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise UserError(f"{path}: {frames} frames or pages; give one image per view")
            img.load()
            fmt = (img.format or path.suffix.lstrip(".")).lower()
            mode = img.mode
            pixels, bits = _pil_pixels(img)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UserError(
            f"{path}: cannot read the image ({type(err).__name__}: {err}); expected PNG, JPEG, "
            "TIFF or DICOM"
        ) from None
    return Radiograph(pixels, str(path), fmt, bits=bits, photometric=mode)


def _pil_pixels(img: Image.Image) -> tuple[np.ndarray, int | None]:
    """(H, W) float32 grey values and their bits per sample."""
    mode = img.mode
    if mode in _GREY_BITS:
        return np.asarray(img).astype(np.float32), _GREY_BITS[mode]
    if mode == "F":
        return np.asarray(img, dtype=np.float32), None
    # palette, grey + alpha, RGB(A), CMYK, YCbCr, ...: 8-bit luminance
    return np.asarray(img.convert("L")).astype(np.float32), 8


def write_png(image: np.ndarray, path: str | Path, bits: int = 16) -> Path:
    """Save a (H, W) image (e.g. a DRR's line integrals) as a grey PNG, linearly scaled from
    its minimum to its maximum over the full `bits` range (8 or 16).

    The percentile window that `xmatch match` applies is invariant to that scaling, so a DRR
    exported here and read back gives the model the input it was trained with (up to the
    quantisation: 1 / 65535 of the range at 16 bits).
    """
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    top = (1 << bits) - 1
    q = np.round((x - lo) / max(hi - lo, 1e-12) * top)
    dtype = {8: np.uint8, 16: np.uint16}[bits]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(q.astype(dtype)).save(path)
    return path
