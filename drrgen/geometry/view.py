"""A cone-beam view in ASTRA `cone_vec` convention, in the CT's physical frame (LPS, mm).

The detector image is indexed ``[row, col]`` with shape (H, W). ``u`` is the vector (mm) from
pixel (r, c) to pixel (r, c + 1), ``v`` the vector from (r, c) to (r + 1, c). The centre of pixel
(r, c) is ``detector_center + (c - (W - 1) / 2) * u + (r - (H - 1) / 2) * v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class View:
    """One X-ray view: point source and flat detector.

    Args:
        source: (3,) X-ray source position, mm.
        detector_center: (3,) centre of the detector, mm.
        u: (3,) column step, mm (pixel (r, c) -> (r, c + 1)).
        v: (3,) row step, mm (pixel (r, c) -> (r + 1, c)).
        shape: detector size (H, W) in pixels.
    """

    source: np.ndarray
    detector_center: np.ndarray
    u: np.ndarray
    v: np.ndarray
    shape: tuple[int, int]

    def __post_init__(self):
        for name in ("source", "detector_center", "u", "v"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(3)
            object.__setattr__(self, name, arr)
        h, w = (int(s) for s in self.shape)
        if h < 1 or w < 1:
            raise ValueError(f"detector shape must be positive, got {self.shape}")
        object.__setattr__(self, "shape", (h, w))

    @classmethod
    def from_vector(cls, vec, shape) -> View:
        """Build from the 12 numbers (source, detector centre, u, v) of `as_vector`."""
        vec = np.asarray(vec, dtype=np.float64).reshape(12)
        return cls(vec[0:3], vec[3:6], vec[6:9], vec[9:12], shape)

    def as_vector(self) -> np.ndarray:
        """(12,) float64: source, detector centre, u, v (ASTRA `cone_vec` row)."""
        return np.concatenate([self.source, self.detector_center, self.u, self.v])

    @property
    def normal(self) -> np.ndarray:
        """(3,) unit detector normal pointing away from the source."""
        n = np.cross(self.u, self.v)
        n /= np.linalg.norm(n)
        return n if np.dot(self.detector_center - self.source, n) > 0 else -n

    def pixel_centers(self) -> np.ndarray:
        """(H, W, 3) mm position of every pixel centre."""
        h, w = self.shape
        c = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
        r = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
        return (
            self.detector_center
            + c[None, :, None] * self.u[None, None, :]
            + r[:, None, None] * self.v[None, None, :]
        )

    def project_points(self, xyz: np.ndarray) -> np.ndarray:
        """Pinhole projection of (..., 3) mm points to (..., 2) fractional (row, col).

        Pixel (r, c) covers row in [r - 0.5, r + 0.5) and col in [c - 0.5, c + 0.5).
        Points at or behind the source plane give NaN.
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        h, w = self.shape
        # Solve source + t (x - source) = d + a u + b v for (t, a, b) per point.
        ray = xyz - self.source
        m = np.stack([self.u, self.v], axis=1)  # (3, 2)
        n = np.cross(self.u, self.v)
        denom = ray @ n
        t = np.where(denom != 0, ((self.detector_center - self.source) @ n) / denom, np.nan)
        t = np.where(t > 0, t, np.nan)
        hit = self.source + t[..., None] * ray - self.detector_center  # (..., 3)
        ab = np.linalg.lstsq(m, hit.reshape(-1, 3).T, rcond=None)[0].T
        ab = ab.reshape(hit.shape[:-1] + (2,))
        col = ab[..., 0] + (w - 1) / 2.0
        row = ab[..., 1] + (h - 1) / 2.0
        return np.stack([row, col], axis=-1)

    def downsample(self, factor: int) -> View:
        """The same detector with pixels `factor` times larger: (H/f, W/f) pixels, u*f, v*f.

        Pixel (R, C) of the result covers the fine pixels [fR, fR + f) x [fC, fC + f).
        """
        h, w = self.shape
        if h % factor or w % factor:
            raise ValueError(f"detector {self.shape} is not divisible by {factor}")
        return View(
            self.source,
            self.detector_center,
            self.u * factor,
            self.v * factor,
            (h // factor, w // factor),
        )
