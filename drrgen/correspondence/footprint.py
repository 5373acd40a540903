"""Sparse Joseph footprints of single coarse voxels on a patch-level detector.

For the ray from the source S to a patch centre Q (coarse index space, d = Q - S) Joseph's
method steps along the dominant axis m = argmax |d_c|. A volume that is zero except for voxel
v = (v_m, v_a, v_b) contributes on slice v_m only, where the ray sits at
``(a, b) = (S_a, S_b) + t (d_a, d_b)`` with ``t = (v_m - S_m) / d_m`` in [0, 1]; the bilinear
weight is ``max(0, 1 - |a - v_a|) * max(0, 1 - |b - v_b|)`` and the projector multiplies by
the step length ``L = ||A d|| / |d_m|`` (mm). So the footprint of v on that ray is
``value_v * L * w_a * w_b``, exactly what projecting the one-voxel volume would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from drrgen.geometry.view import View
from drrgen.volume.volume import Volume


@dataclass(frozen=True)
class Footprints:
    """Per-voxel sparse footprints on one view's patch detector (CSR by voxel).

    Attributes:
        ptr: (n_vox + 1,) int64; voxel n owns entries ``ptr[n]:ptr[n + 1]``.
        patch: (nnz,) int32 row-major patch index ``R * W_p + C``, ascending per voxel.
        weight: (nnz,) float64 footprint value (dimensionless value x mm), all > 0.
    """

    ptr: np.ndarray
    patch: np.ndarray
    weight: np.ndarray


def pinhole_matrix(view: View) -> np.ndarray:
    """(3, 4) projective map from homogeneous LPS mm (x, y, z, 1) to (row w, col w, w).

    ``w = (x - source) . n`` with n the unit detector normal (away from the source), so
    ``w > 0`` exactly for points in front of the source; (row, col) are fractional pixel
    coordinates as in `View.project_points` (pixel (r, c) centred on (r, c)).
    """
    s, d, u, v = view.source, view.detector_center, view.u, view.v
    h, w = view.shape
    n = view.normal
    # Dual basis of (u, v) in the detector plane: e_u . u = 1, e_u . v = 0 (and vice versa).
    e_u = np.cross(v, n) / np.dot(u, np.cross(v, n))
    e_v = np.cross(n, u) / np.dot(v, np.cross(n, u))
    depth = np.append(n, -np.dot(n, s))
    sdd = np.dot(d - s, n)
    # The hit point is s + (sdd / depth) (x - s); its (u, v) coordinates times depth are linear.
    a = np.dot(s - d, e_u) * depth + sdd * np.append(e_u, -np.dot(e_u, s))
    b = np.dot(s - d, e_v) * depth + sdd * np.append(e_v, -np.dot(e_v, s))
    return np.stack([b + (h - 1) / 2.0 * depth, a + (w - 1) / 2.0 * depth, depth])


@dataclass(frozen=True)
class PatchRays:
    """The patch-level rays of one view in a grid's index space.

    Attributes:
        source: (3,) source S in index units (i, j, k).
        direction: (N, 3) d = Q - S per patch (row-major), index units.
        axis: (N,) int64 dominant index axis m = argmax |d_c|.
        step_mm: (N,) float64 L = ||A d|| / |d_m|, mm per unit step along m.
        proj: (3, 4) index-space pinhole matrix (homogeneous (i, j, k, 1) -> (R w, C w, w)).
        shape: patch detector shape (H_p, W_p).
    """

    source: np.ndarray
    direction: np.ndarray
    axis: np.ndarray
    step_mm: np.ndarray
    proj: np.ndarray
    shape: tuple[int, int]


def patch_rays(grid: Volume, view: View, patch: int) -> PatchRays:
    """The rays from the source to the centres of ``view.downsample(patch)`` in `grid`'s indices."""
    coarse_view = view.downsample(patch)
    s = grid.world_to_index(coarse_view.source)
    q = grid.world_to_index(coarse_view.pixel_centers().reshape(-1, 3))
    d = q - s
    axis = np.argmax(np.abs(d), axis=1)
    dm = np.abs(d[np.arange(len(d)), axis])
    step_mm = np.linalg.norm(d @ grid.affine[:3, :3].T, axis=1) / dm
    proj = pinhole_matrix(coarse_view) @ grid.affine
    return PatchRays(s, d, axis.astype(np.int64), step_mm, proj, coarse_view.shape)


@njit(cache=True)
def _box(proj, vi, vj, vk, h, w):
    """Patch rows/cols whose centres can see the cube [v - 1, v + 1]^3: (r0, r1, c0, c1) inclusive.

    A ray with a nonzero Joseph weight for v crosses slice v_m inside the square
    |a - v_a| < 1, |b - v_b| < 1, so it passes through the cube; its patch centre projects
    from a cube point and lies in the bounding box of the projected corners.
    """
    rmin, rmax, cmin, cmax = np.inf, -np.inf, np.inf, -np.inf
    for corner in range(8):
        x = vi + (1.0 if corner & 1 else -1.0)
        y = vj + (1.0 if corner & 2 else -1.0)
        z = vk + (1.0 if corner & 4 else -1.0)
        den = proj[2, 0] * x + proj[2, 1] * y + proj[2, 2] * z + proj[2, 3]
        if den <= 0.0:
            # The cube reaches behind the source: any patch may see it.
            return 0, h - 1, 0, w - 1
        r = (proj[0, 0] * x + proj[0, 1] * y + proj[0, 2] * z + proj[0, 3]) / den
        c = (proj[1, 0] * x + proj[1, 1] * y + proj[1, 2] * z + proj[1, 3]) / den
        rmin, rmax = min(rmin, r), max(rmax, r)
        cmin, cmax = min(cmin, c), max(cmax, c)
    # A small margin against rounding: the exact weight below rejects extra patches.
    r0 = max(0, int(np.ceil(rmin - 1e-6)))
    r1 = min(h - 1, int(np.floor(rmax + 1e-6)))
    c0 = max(0, int(np.ceil(cmin - 1e-6)))
    c1 = min(w - 1, int(np.floor(cmax + 1e-6)))
    return r0, r1, c0, c1


@njit(cache=True)
def _weight(s, d, axis, step_mm, ray, vi, vj, vk):
    """Joseph weight (mm) of unit voxel (vi, vj, vk) on patch ray `ray`; 0 if the ray misses it."""
    m = axis[ray]
    vm = vi if m == 0 else (vj if m == 1 else vk)
    t = (vm - s[m]) / d[ray, m]
    if t < 0.0 or t > 1.0:
        return 0.0
    # Bilinear tent on slice v_m along the two non-dominant axes (the dominant one is exact).
    wgt = step_mm[ray]
    if m != 0:
        wgt *= max(0.0, 1.0 - abs(s[0] + t * d[ray, 0] - vi))
    if m != 1:
        wgt *= max(0.0, 1.0 - abs(s[1] + t * d[ray, 1] - vj))
    if m != 2:
        wgt *= max(0.0, 1.0 - abs(s[2] + t * d[ray, 2] - vk))
    return wgt


@njit(parallel=True, cache=True)
def _count(vox, s, d, axis, step_mm, proj, h, w, counts):
    """counts[n] = number of patches with a nonzero weight for voxel vox[n] (3,)."""
    for n in prange(vox.shape[0]):
        vi, vj, vk = float(vox[n, 0]), float(vox[n, 1]), float(vox[n, 2])
        r0, r1, c0, c1 = _box(proj, vi, vj, vk, h, w)
        k = 0
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                if _weight(s, d, axis, step_mm, r * w + c, vi, vj, vk) > 0.0:
                    k += 1
        counts[n] = k


@njit(parallel=True, cache=True)
def _fill(vox, value, s, d, axis, step_mm, proj, h, w, ptr, patch, weight):
    """Write voxel n's (patch, value * weight) entries at ptr[n]:ptr[n + 1]."""
    for n in prange(vox.shape[0]):
        vi, vj, vk = float(vox[n, 0]), float(vox[n, 1]), float(vox[n, 2])
        r0, r1, c0, c1 = _box(proj, vi, vj, vk, h, w)
        k = ptr[n]
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                wgt = _weight(s, d, axis, step_mm, r * w + c, vi, vj, vk)
                if wgt > 0.0:
                    patch[k] = r * w + c
                    weight[k] = value[n] * wgt
                    k += 1


def footprints(vox: np.ndarray, value: np.ndarray, rays: PatchRays) -> Footprints:
    """Sparse footprints of coarse voxels on one view's patch detector.

    Args:
        vox: (n_vox, 3) int64 coarse voxel indices (i, j, k).
        value: (n_vox,) float64 coarse values (> 0).
        rays: the view's `PatchRays` in the same grid.

    Returns:
        `Footprints` with ``weight = value * L * w_a * w_b`` (value x mm) per nonzero patch.
    """
    h, w = rays.shape
    args = (rays.source, rays.direction, rays.axis, rays.step_mm, rays.proj, h, w)
    counts = np.empty(len(vox), dtype=np.int64)
    _count(vox, *args, counts)
    ptr = np.zeros(len(vox) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    patch = np.empty(ptr[-1], dtype=np.int32)
    weight = np.empty(ptr[-1], dtype=np.float64)
    _fill(vox, value, *args, ptr, patch, weight)
    return Footprints(ptr, patch, weight)
