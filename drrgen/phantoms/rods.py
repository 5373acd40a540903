"""Signed distances to bowed, tapered capsules ("rods"): the shape primitive of the phantoms.

A rod runs from `a` to `b` (mm); its centreline bows sideways by `bow_mm` at mid-length and its
radius goes linearly from `radius_a` to `radius_b`, widened near each end by `flare_a` /
`flare_b` (relative), like the metaphysis and epiphysis of a long bone. Clamping the axial
coordinate gives rounded end caps: two rods that end near each other form a joint with a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_END_WIDTH = 0.12  # flare falls off over about this fraction of the length


@dataclass(frozen=True)
class Rod:
    """A bowed, tapered capsule in phantom coordinates (mm, grid centre at 0).

    Attributes:
        a, b: (3,) end points of the straight axis, mm.
        radius_a, radius_b: radii at the ends before flaring, mm.
        flare_a, flare_b: relative radius increase at each end (0.3 = 30 % wider).
        bow_mm: sideways displacement of the centreline at mid-length, mm.
        bow_dir: (3,) direction of the bow (made perpendicular to the axis).
    """

    a: np.ndarray
    b: np.ndarray
    radius_a: float
    radius_b: float
    flare_a: float = 0.0
    flare_b: float = 0.0
    bow_mm: float = 0.0
    bow_dir: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))

    def transformed(self, rotation: np.ndarray, scale: float) -> Rod:
        """The rod mapped by the (3, 3) rotation (or mirror) `rotation` about the origin and
        scaled by `scale`."""
        return Rod(
            scale * rotation @ np.asarray(self.a, float),
            scale * rotation @ np.asarray(self.b, float),
            scale * self.radius_a,
            scale * self.radius_b,
            self.flare_a,
            self.flare_b,
            scale * self.bow_mm,
            rotation @ np.asarray(self.bow_dir, float),
        )

    def axis_point(self, s) -> np.ndarray:
        """(..., 3) points of the bowed centreline at fractions `s` of the length (0 at `a`)."""
        s = np.asarray(s, dtype=np.float64)[..., None]
        a, b = np.asarray(self.a, float), np.asarray(self.b, float)
        d = b - a
        n = np.asarray(self.bow_dir, float)
        n = n - (n @ d) / max(float(d @ d), 1e-12) * d
        n = n / max(float(np.linalg.norm(n)), 1e-12)
        return a + s * d + 4 * self.bow_mm * s * (1 - s) * n

    def radius_at(self, s) -> np.ndarray:
        """Radius (flare included) at fractions `s` of the length, mm."""
        s = np.asarray(s, dtype=np.float64)
        flare = self.flare_a * np.exp(-((s / _END_WIDTH) ** 2)) + self.flare_b * np.exp(
            -(((1 - s) / _END_WIDTH) ** 2)
        )
        return (self.radius_a + (self.radius_b - self.radius_a) * s) * (1 + flare)

    @property
    def length_mm(self) -> float:
        """Distance from `a` to `b`, mm."""
        return float(np.linalg.norm(np.asarray(self.b, float) - np.asarray(self.a, float)))

    @property
    def reach_mm(self) -> float:
        """Upper bound of the distance from the axis to the surface, mm."""
        r = max(self.radius_a * (1 + self.flare_a), self.radius_b * (1 + self.flare_b))
        return r + abs(self.bow_mm)


def end_weight(s: np.ndarray) -> np.ndarray:
    """1 at either end of the rod (s = 0 or 1), falling to 0 along the shaft."""
    return np.exp(-((s / _END_WIDTH) ** 2)) + np.exp(-(((1 - s) / _END_WIDTH) ** 2))


def rod_box(rod: Rod, grid_mm: list[np.ndarray], margin_mm: float) -> tuple[slice, slice, slice]:
    """Index slices [k, j, i] of the grid points within `margin_mm` of the rod's bounding box.

    Args:
        rod: the rod.
        grid_mm: [x (ni,), y (nj,), z (nk,)] sorted coordinates of the grid points, mm.
        margin_mm: extra distance to include, mm.
    """
    reach = rod.reach_mm + margin_mm
    lo = np.minimum(rod.a, rod.b) - reach
    hi = np.maximum(rod.a, rod.b) + reach
    slices = [
        slice(int(np.searchsorted(c, l)), int(np.searchsorted(c, h, side="right")))
        for c, l, h in zip(grid_mm, lo, hi, strict=True)
    ]
    return slices[2], slices[1], slices[0]


def rod_sdf(rod: Rod, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate signed distance to the rod surface (negative inside), mm.

    Args:
        rod: the rod.
        x, y, z: coordinates of the points, mm, broadcastable to one shape, e.g. (1, 1, ni),
            (1, nj, 1), (nk, 1, 1) for a [k, j, i] block.

    Returns:
        (sdf, s): float32 arrays of the broadcast shape; s in [0, 1] is the position along the
        rod (0 at `a`) of the nearest axis point.
    """
    a = np.asarray(rod.a, np.float64)
    axis = np.asarray(rod.b, np.float64) - a
    length = float(np.linalg.norm(axis))
    d = axis / length if length > 1e-9 else np.array([0.0, 0.0, 1.0])  # a sphere if a == b
    length = max(length, 1e-6)
    f32 = np.float32
    dx, dy, dz = (
        (x - f32(a[0])).astype(f32),
        (y - f32(a[1])).astype(f32),
        (z - f32(a[2])).astype(f32),
    )
    # |e|^2 of the offset e = p - a - t d - side n from the nearest axis point, expanded so that
    # every full-size operation is on scalars: |p - a|^2 and (p - a).d, (p - a).n are sums of
    # per-axis terms (small broadcast arrays), and d is perpendicular to n.
    along = dx * f32(d[0]) + dy * f32(d[1]) + dz * f32(d[2])
    t = np.clip(along, f32(0), f32(length))
    e2 = (dx * dx + dy * dy + dz * dz) + t * (t - f32(2) * along)
    s = t / f32(length)
    if rod.bow_mm != 0:
        n = np.asarray(rod.bow_dir, np.float64)
        n = n - (n @ d) * d
        n = n / max(float(np.linalg.norm(n)), 1e-12)
        across = dx * f32(n[0]) + dy * f32(n[1]) + dz * f32(n[2])
        side = f32(4 * rod.bow_mm) * s * (f32(1) - s)  # parabolic bow, bow_mm at mid-length
        e2 += side * (side - f32(2) * across)
    radius = f32(rod.radius_a) + f32(rod.radius_b - rod.radius_a) * s
    if rod.flare_a or rod.flare_b:
        flare = f32(1)
        if rod.flare_a:
            flare = flare + f32(rod.flare_a) * np.exp(-((s / f32(_END_WIDTH)) ** 2))
        if rod.flare_b:
            flare = flare + f32(rod.flare_b) * np.exp(-(((f32(1) - s) / f32(_END_WIDTH)) ** 2))
        radius = radius * flare
    return np.sqrt(np.maximum(e2, f32(0))) - radius, s


def smooth_min(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields (blends unions over about k_mm)."""
    if k_mm <= 0:
        return np.minimum(a, b)
    k = np.float32(k_mm)
    h = np.clip(np.float32(0.5) + np.float32(0.5) * (b - a) / k, np.float32(0), np.float32(1))
    return b + (a - b) * h - k * h * (np.float32(1) - h)
