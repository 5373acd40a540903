"""From stored line integrals to network inputs, and augmentations that keep C consistent.

Display transform, per view (`to_display` here in numpy as the reference; the training path
runs the same arithmetic batch-wise in torch on the device, see `xmatch_train.data.batch`):
    1. ``I = L`` (default ``mode="log"``): the dimensionless line integral of mu is already
       the log of the attenuation, ``L = -log(I_detector / I_0)``, i.e. what a radiograph shows
       after the detector's log conversion: air 0, bone bright, contrast linear in thickness.
       ``mode="absorbed"`` uses ``I = 1 - exp(-L)``, the absorbed fraction of the beam, which
       saturates in thick regions (flatter bone contrast on limbs).
    2. Robust window: ``I = clip((I - p_lo) / (p_hi - p_lo), 0, 1)`` with the ``p_lo`` and
       ``p_hi`` percentiles (default 0.5 and 99.5) of the image, estimated on a strided
       subsample of pixels (exact enough, and 16x cheaper than on every pixel).

Photometric augmentations (the paper's): contrast scaling about 0.5, brightness shift and
inversion ``I -> 1 - I``, drawn per view in the DataLoader worker (`draw_photometric`, three
numbers) and applied after the display transform; images stay in [0, 1].

Geometric augmentations (flips and 90-degree rotations of one view, applied in the worker)
move patches, so the same operation is applied to the patch-index grid and the resulting
permutation is applied to the rows (view 0) or the columns (view 1) of C. The view's geometry
vector is transformed to the one of the flipped/rotated detector, so it still describes the
image exactly (a horizontal flip is the view with ``u -> -u``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DisplayConfig:
    """Line integral -> image.

    Attributes:
        mode: ``log`` (L itself, the log-domain radiograph) or ``absorbed`` (1 - exp(-L)).
        low_pct, high_pct: window percentiles, in percent.
        stride: pixel stride of the subsample the percentiles are estimated on.
    """

    mode: str = "log"
    low_pct: float = 0.5
    high_pct: float = 99.5
    stride: int = 4


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (all off = 0).

    Attributes:
        brightness: additive shift drawn from U(-brightness, brightness).
        contrast: factor drawn from U(1 - contrast, 1 + contrast), applied about 0.5.
        invert: probability of ``I -> 1 - I``.
        hflip: probability of a horizontal flip (columns reversed).
        vflip: probability of a vertical flip (rows reversed).
        rot90: probability of a rotation by 90, 180 or 270 degrees (square images only).
    """

    brightness: float = 0.0
    contrast: float = 0.0
    invert: float = 0.0
    hflip: float = 0.0
    vflip: float = 0.0
    rot90: float = 0.0


def to_display(line_integral: np.ndarray, cfg: DisplayConfig = DisplayConfig()) -> np.ndarray:
    """Map one view's line integrals to a windowed image.

    Args:
        line_integral: (H, W) line integrals of mu (dimensionless), any float dtype.
        cfg: the transform's settings.

    Returns:
        (H, W) float32 in [0, 1].
    """
    x = np.asarray(line_integral, dtype=np.float32)
    if cfg.mode == "absorbed":
        x = -np.expm1(-x)
    elif cfg.mode != "log":
        raise ValueError(f"unknown display mode {cfg.mode!r}; expected 'log' or 'absorbed'")
    s = max(1, cfg.stride)
    lo, hi = np.percentile(x[::s, ::s], [cfg.low_pct, cfg.high_pct])
    scale = np.float32(1.0 / max(hi - lo, 1e-6))
    out = (x - np.float32(lo)) * scale
    np.clip(out, 0.0, 1.0, out=out)
    return out


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) -> (H / f, W / f) mean over f x f pixel blocks (f = 1 returns the input)."""
    if factor == 1:
        return image
    h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"image {image.shape} is not divisible by {factor}")
    return image.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


IDENTITY_PHOTOMETRIC = np.array([1.0, 0.0, 0.0], dtype=np.float32)


def draw_photometric(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """(3,) float32 (contrast factor, brightness shift, invert 0/1) for one view."""
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) if cfg.contrast else 1.0
    b = rng.uniform(-cfg.brightness, cfg.brightness) if cfg.brightness else 0.0
    inv = 1.0 if cfg.invert > 0 and rng.random() < cfg.invert else 0.0
    return np.array([c, b, inv], dtype=np.float32)


def photometric(image: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Apply `draw_photometric` parameters to a (H, W) image in [0, 1] (numpy reference)."""
    c, b, inv = (float(x) for x in params)
    out = np.clip((image - 0.5) * np.float32(c) + np.float32(0.5 + b), 0.0, 1.0)
    return (1.0 - out if inv else out).astype(np.float32)


@dataclass(frozen=True)
class GridOp:
    """A flip/rotation of an image grid: ``hflip``, then ``vflip``, then ``rot`` x 90 degrees.

    The rotation is `numpy.rot90` on the last two axes (counter-clockwise as displayed with
    row 0 at the top).
    """

    hflip: bool = False
    vflip: bool = False
    rot: int = 0

    @property
    def identity(self) -> bool:
        """True when the op changes nothing."""
        return not (self.hflip or self.vflip or self.rot % 4)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Apply to an array whose first two axes are (row, col): (H, W, ...)."""
        if self.hflip:
            x = x[:, ::-1]
        if self.vflip:
            x = x[::-1]
        if self.rot % 4:
            x = np.rot90(x, self.rot % 4, axes=(0, 1))
        return x

    def patch_permutation(self, grid: tuple[int, int]) -> np.ndarray:
        """(N,) int: new patch n shows old patch ``perm[n]`` (row-major numbering)."""
        return np.ascontiguousarray(self.apply(np.arange(grid[0] * grid[1]).reshape(grid))).ravel()

    def geometry(self, vec: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The (12,) view vector (source, detector centre, u, v) of the transformed image."""
        vec = np.asarray(vec, dtype=np.float64)
        s, d, u, v = vec[0:3], vec[3:6], vec[6:9], vec[9:12]
        h, w = shape
        # Corner pixel centres carry all the information of the affine pixel grid.
        c = np.array([0.0, w - 1.0]) - (w - 1) / 2.0
        r = np.array([0.0, h - 1.0]) - (h - 1) / 2.0
        corners = d + c[None, :, None] * u + r[:, None, None] * v  # (2, 2, 3)
        t = self.apply(corners)
        # After the op, the corner grid's neighbours are (n - 1) pixel steps apart.
        h2, w2 = (w, h) if self.rot % 2 else (h, w)
        u2 = (t[0, 1] - t[0, 0]) / max(w2 - 1, 1)
        v2 = (t[1, 0] - t[0, 0]) / max(h2 - 1, 1)
        return np.concatenate([s, d, u2, v2])


def random_grid_op(rng: np.random.Generator, cfg: AugmentConfig, square: bool) -> GridOp:
    """Draw a `GridOp` (rotations only for square images)."""
    h = cfg.hflip > 0 and rng.random() < cfg.hflip
    v = cfg.vflip > 0 and rng.random() < cfg.vflip
    r = int(rng.integers(1, 4)) if square and cfg.rot90 > 0 and rng.random() < cfg.rot90 else 0
    return GridOp(bool(h), bool(v), r)
