"""A radiograph -> the model's input, the way the model saw its training DRRs, and the map back
from model patches to pixels of the original image.

Training (`xmatch_train.data.batch`): a store DRR (line integrals, bone bright, air 0) is
windowed at its own 0.5-99.5 percentiles (``data.display``, estimated on every
``display.stride``-th pixel) to [0, 1], then average-pooled to ``data.image_size``. Here, for
an image read by `read_image` (bone bright):

1. **borders** (optional): constant-valued border rows and columns (collimator shutters,
   masks) are cropped when obvious (`collimation_box`);
2. **square**: ``pad`` (default) centres the image on a square of side max(H, W), the margin
   black (air, 0 after the window, as around a DRR's subject); ``crop`` keeps the centred
   square of side min(H, W);
3. **window**: ``(x - p_lo) / (p_hi - p_lo)`` clipped to [0, 1], with the run's percentiles
   of the pixels the model sees (the training transform's, which is invariant to any
   increasing affine map of the grey values: a DRR exported to a PNG gives the same input);
4. **resize** to ``image_size``: average pooling for an integer factor (exactly the training
   path), area interpolation otherwise, bilinear when enlarging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xmatch_train.data.transforms import DisplayConfig
from xmatch_train.match.images import Radiograph

FITS = ("pad", "crop")

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1): rows [y0, y1), columns [x0, x1)


@dataclass(frozen=True)
class Frame:
    """Where the model's input lies in the original image.

    A model pixel coordinate ``m`` (continuous, pixel edges at integers) is the original
    coordinate ``offset + m * scale``, per axis; ``visible`` is the part of the original image
    the model sees (inside the borders and the square).

    Attributes:
        shape: (H, W) of the original image.
        size: model input side, pixels.
        scale: original pixels per model pixel.
        offset: (y, x) original coordinates of the model image's top-left corner (negative
            where the square was padded).
        visible: (y0, y1, x0, x1) box of the original image the model sees.
    """

    shape: tuple[int, int]
    size: int
    scale: float
    offset: tuple[float, float]
    visible: Box

    def patch_box(self, patch: int, grid: tuple[int, int]) -> list[float] | None:
        """``[x0, y0, x1, y1]`` in original pixels of model patch `patch` (row-major on
        `grid`), clipped to the visible part; None when it shows nothing of the image."""
        r, c = divmod(int(patch), grid[1])
        ph, pw = self.size / grid[0], self.size / grid[1]
        y0, y1 = self.offset[0] + self.scale * r * ph, self.offset[0] + self.scale * (r + 1) * ph
        x0, x1 = self.offset[1] + self.scale * c * pw, self.offset[1] + self.scale * (c + 1) * pw
        vy0, vy1, vx0, vx1 = self.visible
        y0, y1, x0, x1 = max(y0, vy0), min(y1, vy1), max(x0, vx0), min(x1, vx1)
        if y1 - y0 < 1e-6 or x1 - x0 < 1e-6:
            return None
        return [round(float(v), 2) for v in (x0, y0, x1, y1)]

    def inside(self, grid: tuple[int, int]) -> np.ndarray:
        """(N,) bool: patches that show part of the image."""
        n = grid[0] * grid[1]
        return np.array([self.patch_box(p, grid) is not None for p in range(n)])

    def patch_at(self, x: float, y: float, grid: tuple[int, int]) -> int | None:
        """The patch showing original pixel (column `x`, row `y`), None outside the visible
        part."""
        vy0, vy1, vx0, vx1 = self.visible
        if not (vx0 <= x < vx1 and vy0 <= y < vy1):
            return None
        cy, cx = y + 0.5, x + 0.5  # the pixel's centre
        my, mx = (cy - self.offset[0]) / self.scale, (cx - self.offset[1]) / self.scale
        r = min(grid[0] - 1, int(my * grid[0] / self.size))
        c = min(grid[1] - 1, int(mx * grid[1] / self.size))
        return r * grid[1] + c

    def extent(self) -> tuple[float, float, float, float]:
        """The model image's extent in original coordinates, for ``imshow(extent=...)``:
        (left, right, bottom, top)."""
        side = self.size * self.scale
        top, left = self.offset
        return (left, left + side, top + side, top)


@dataclass(frozen=True)
class Prepared:
    """A radiograph ready for the model.

    Attributes:
        image: (size, size) float32 in [0, 1], the model input.
        frame: the map back to the original pixels.
        window: (low, high) grey values of the percentile window, in the reader's units.
        radiograph: the image as read.
    """

    image: np.ndarray
    frame: Frame
    window: tuple[float, float]
    radiograph: Radiograph

    def display(self) -> np.ndarray:
        """(H, W) the whole original image in [0, 1] under the model's window (for figures)."""
        lo, hi = self.window
        x = (self.radiograph.pixels - np.float32(lo)) / np.float32(max(hi - lo, 1e-12))
        return np.clip(x, 0.0, 1.0)

    def tensor(self) -> torch.Tensor:
        """(1, 1, size, size) float32."""
        return torch.from_numpy(self.image)[None, None]


def collimation_box(pixels: np.ndarray, tolerance: float = 0.002, keep: float = 0.5) -> Box:
    """The image inside constant-valued border rows and columns (collimator shutters, masks).

    A border row or column is constant when its values span at most `tolerance` of the
    image's 0.5-99.5 percentile range (shutters are written as one value; anatomy and
    exposed air carry noise); such bands are peeled from the four sides until none is left.
    Cropping happens only when obvious: if less than `keep` of either side would remain, the
    whole image is kept.

    Args:
        pixels: (H, W) image.

    Returns:
        (y0, y1, x0, x1).
    """
    h, w = pixels.shape
    lo, hi = np.percentile(pixels[:: max(1, h // 256), :: max(1, w // 256)], [0.5, 99.5])
    tol = tolerance * float(hi - lo)
    box = (0, h, 0, w)
    while True:
        y0, y1, x0, x1 = box
        sub = pixels[y0:y1, x0:x1]
        rows = np.ptp(sub, axis=1) <= tol  # (h',)
        cols = np.ptp(sub, axis=0) <= tol  # (w',)
        if rows.all() or cols.all():
            return (0, h, 0, w)  # nothing but flat bands: not a collimated image
        new = (
            y0 + _run(rows),
            y1 - _run(rows[::-1]),
            x0 + _run(cols),
            x1 - _run(cols[::-1]),
        )
        if new == box:
            break
        box = new
    y0, y1, x0, x1 = box
    if (y1 - y0) < keep * h or (x1 - x0) < keep * w:
        return (0, h, 0, w)
    return box


def _run(flags: np.ndarray) -> int:
    """Length of the leading run of True."""
    off = np.flatnonzero(~flags)
    return int(off[0]) if off.size else int(flags.size)


def square_region(box: Box, fit: str) -> tuple[Box, int]:
    """The part of `box` the model sees and the square's side: the whole box (``pad``, side
    max(h, w)) or its centred square (``crop``, side min(h, w))."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    if fit == "pad":
        return box, max(h, w)
    if fit != "crop":
        raise ValueError(f"--fit {fit}: expected one of {', '.join(FITS)}")
    side = min(h, w)
    ty, tx = y0 + (h - side) // 2, x0 + (w - side) // 2
    return (ty, ty + side, tx, tx + side), side


def percentile_window(pixels: np.ndarray, display: DisplayConfig) -> tuple[float, float]:
    """(low, high): the `display` percentiles on every ``stride``-th pixel (the training
    transform's estimate)."""
    s = max(1, display.stride)
    lo, hi = np.percentile(pixels[::s, ::s], [display.low_pct, display.high_pct])
    return float(lo), float(hi)


def resize(square: np.ndarray, size: int) -> np.ndarray:
    """(S, S) -> (size, size) float32: average pooling for an integer factor, area
    interpolation for other reductions, bilinear for enlargements."""
    x = torch.from_numpy(np.ascontiguousarray(square, dtype=np.float32))[None, None]
    side = square.shape[0]
    if side == size:
        out = x
    elif side % size == 0:
        out = F.avg_pool2d(x, side // size)
    elif side > size:
        out = F.interpolate(x, size=(size, size), mode="area")
    else:
        out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def prepare(
    image: Radiograph,
    size: int,
    display: DisplayConfig = DisplayConfig(),
    fit: str = "pad",
    borders: bool = False,
) -> Prepared:
    """`image` -> the model's (size, size) input in [0, 1] and its `Frame` (module docstring).

    Args:
        image: the radiograph, bone bright.
        size: the run's input side (``data.image_size``).
        display: the run's ``data.display`` (its percentiles and stride).
        fit: ``pad`` or ``crop`` (how a non-square image becomes square).
        borders: crop constant border bands first (`collimation_box`).
    """
    pixels = image.pixels
    box = collimation_box(pixels) if borders else (0, pixels.shape[0], 0, pixels.shape[1])
    (y0, y1, x0, x1), side = square_region(box, fit)
    seen = pixels[y0:y1, x0:x1]  # (h, w) what the model sees
    lo, hi = percentile_window(seen, display)
    windowed = np.clip((seen - np.float32(lo)) / np.float32(max(hi - lo, 1e-6)), 0.0, 1.0)
    h, w = seen.shape
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side), np.float32)  # (S, S), black margins
    square[top : top + h, left : left + w] = windowed
    frame = Frame(
        shape=image.shape,
        size=size,
        scale=side / size,
        offset=(float(y0 - top), float(x0 - left)),
        visible=(y0, y1, x0, x1),
    )
    return Prepared(resize(square, size), frame, (lo, hi), image)
