"""Sparse Joseph footprints of single coarse voxels on a patch-level detector.

For the ray from the source S to a patch centre Q (coarse index space, d = Q - S) Joseph's
method steps along the dominant axis m = argmax |d_c|. A volume that is zero except for voxel
v = (v_m, v_a, v_b) contributes on slice v_m only, where the ray sits at
``(a, b) = (S_a, S_b) + t (d_a, d_b)`` with ``t = (v_m - S_m) / d_m`` in [0, 1]; the bilinear
weight is ``max(0, 1 - |a - v_a|) * max(0, 1 - |b - v_b|)`` and the projector multiplies by
the step length ``L = ||A d|| / |d_m|`` (mm). So the footprint of v on that ray is
``value_v * L * w_a * w_b``, exactly what projecting the one-voxel volume would give.

All geometry here is in the coarse grid's index space: lines, planes and intersections are
preserved by the affine map, so the pinhole projection can be computed there directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from drrgen.correspondence.coarse import CoarseGrid
from drrgen.geometry.view import View


@dataclass(frozen=True)
class Footprints:
    """Sparse footprints of voxels on one view's patch detector (or their inverse by patch).

    Attributes:
        start: (n,) int64; item n (a voxel, or a patch for `accumulate.invert`) owns entries
            ``start[n] : start[n] + count[n]``.
        count: (n,) int64 number of entries of item n.
        patch: int32 entry ids: row-major patch index ``R * W_p + C`` (ascending per voxel),
            or voxel ids for the inverse. Slots past an item's count are unused.
        weight: float64 entry values (dimensionless value x mm), > 0 where used.
    """

    start: np.ndarray
    count: np.ndarray
    patch: np.ndarray
    weight: np.ndarray


@njit(cache=True)
def _cross(a, b):
    """(3,) cross product a x b."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


@njit(cache=True)
def pinhole(s, det, du, dv, h, w):
    """(3, 4) projective map (x, 1) -> (row z, col z, z) of an (h, w) detector.

    Args:
        s, det, du, dv: (3,) source, detector centre, column and row steps, in any affine frame
            (LPS mm, or a grid's index space).
        h, w: detector rows and columns.

    ``z > 0`` exactly for points on the detector side of the source plane; (row, col) are
    fractional pixel coordinates as in `View.project_points` (pixel (r, c) centred on (r, c)).
    """
    n = _cross(du, dv)
    if np.dot(det - s, n) < 0:
        n = -n
    sdd = np.dot(det - s, n)
    # Dual basis of (du, dv) in the detector plane: e_u . du = 1, e_u . dv = 0 (and vice versa).
    e_u = _cross(dv, n) / np.dot(du, _cross(dv, n))
    e_v = _cross(n, du) / np.dot(dv, _cross(n, du))
    # The hit point is s + (sdd / depth) (x - s) with depth = (x - s) . n; its detector
    # coordinates times depth are linear in x.
    out = np.empty((3, 4))
    for q, e, centre in ((0, e_v, (h - 1) / 2.0), (1, e_u, (w - 1) / 2.0)):
        shift = np.dot(s - det, e)
        for c in range(3):
            out[q, c] = shift * n[c] + sdd * e[c] + centre * n[c]
        out[q, 3] = -(shift + centre) * np.dot(n, s) - sdd * np.dot(e, s)
    out[2, :3] = n
    out[2, 3] = -np.dot(n, s)
    return out


def pinhole_matrix(view: View) -> np.ndarray:
    """(3, 4) pinhole map of `view`: homogeneous LPS mm (x, y, z, 1) -> (row d, col d, d)."""
    h, w = view.shape
    return pinhole(view.source, view.detector_center, view.u, view.v, h, w)


@njit(cache=True)
def _rays(s, det, du, dv, h, w, lin):
    """Joseph slice form of the rays from s to every pixel centre (index space).

    On slice ``x_m = k`` of its dominant axis m a ray sits at ``x_c = origin[c] + k slope[c]``
    (for c = m: origin 0, slope 1, so x_m = k exactly). Returns origin, slope (n, 3); axis
    (n,); k_range (n, 2) slices between source and pixel centre; step_mm (n,) = ||lin d|| / |d_m|.
    """
    n_rays = h * w
    origin, slope = np.empty((n_rays, 3)), np.empty((n_rays, 3))
    axis, k_range, step_mm = np.empty(n_rays, np.int64), np.empty((n_rays, 2)), np.empty(n_rays)
    d = np.empty(3)
    for r in range(h):
        for c in range(w):
            n = r * w + c
            m = 0
            for a in range(3):
                d[a] = det[a] + (c - (w - 1) / 2.0) * du[a] + (r - (h - 1) / 2.0) * dv[a] - s[a]
                # Strict '>' keeps the first of equal components, like np.argmax.
                if abs(d[a]) > abs(d[m]):
                    m = a
            axis[n] = m
            length2 = 0.0
            for a in range(3):
                slope[n, a] = d[a] / d[m]
                origin[n, a] = s[a] - s[m] * slope[n, a]
                mm = lin[a, 0] * d[0] + lin[a, 1] * d[1] + lin[a, 2] * d[2]
                length2 += mm * mm
            k_range[n, 0] = min(s[m], s[m] + d[m])
            k_range[n, 1] = max(s[m], s[m] + d[m])
            step_mm[n] = np.sqrt(length2) / abs(d[m])
    return origin, slope, axis, k_range, step_mm


@njit(cache=True)
def _corner_offsets(proj):
    """(8, 3) images under `proj` of the corner offsets (+-1, +-1, +-1, 0) of a voxel's cube."""
    out = np.empty((8, 3))
    for q in range(8):
        x = 1.0 if q & 1 else -1.0
        y = 1.0 if q & 2 else -1.0
        z = 1.0 if q & 4 else -1.0
        for c in range(3):
            out[q, c] = proj[c, 0] * x + proj[c, 1] * y + proj[c, 2] * z
    return out


@njit(cache=True)
def _box(proj, offsets, i, j, k, h, w):
    """Patches (r0, r1, c0, c1), inclusive, whose centres can see the cube [v - 1, v + 1]^3.

    A ray with a nonzero Joseph weight for v crosses slice v_m inside the square
    |x_a - v_a| < 1, |x_b - v_b| < 1, so it passes through the cube; its patch centre is the
    projection of a cube point and lies in the bounding box of the projected corners
    (homogeneous corner = image of the centre + image of the offset, `_corner_offsets`).
    """
    hr = proj[0, 0] * i + proj[0, 1] * j + proj[0, 2] * k + proj[0, 3]
    hc = proj[1, 0] * i + proj[1, 1] * j + proj[1, 2] * k + proj[1, 3]
    hw = proj[2, 0] * i + proj[2, 1] * j + proj[2, 2] * k + proj[2, 3]
    rmin, rmax, cmin, cmax = np.inf, -np.inf, np.inf, -np.inf
    for q in range(8):
        den = hw + offsets[q, 2]
        if den <= 0.0:
            return 0, h - 1, 0, w - 1  # the cube reaches behind the source: any patch may see it
        inv = 1.0 / den
        r = (hr + offsets[q, 0]) * inv
        c = (hc + offsets[q, 1]) * inv
        rmin, rmax = min(rmin, r), max(rmax, r)
        cmin, cmax = min(cmin, c), max(cmax, c)
    # A small margin against rounding: the exact weight rejects the extra patches.
    r0 = max(0, int(np.ceil(rmin - 1e-6)))
    r1 = min(h - 1, int(np.floor(rmax + 1e-6)))
    c0 = max(0, int(np.ceil(cmin - 1e-6)))
    c1 = min(w - 1, int(np.floor(cmax + 1e-6)))
    return r0, r1, c0, c1


@njit(parallel=True, cache=True)
def _footprints(vox, value, s, det, du, dv, h, w, lin):
    """Footprints of voxels vox (n, 3) with values (n,) on an (h, w) detector (index space).

    Returns start, count (n,) int64 and patch (capacity,) int32, weight (capacity,) float64.
    """
    origin, slope, axis, k_range, step_mm = _rays(s, det, du, dv, h, w, lin)
    proj = pinhole(s, det, du, dv, h, w)
    offsets = _corner_offsets(proj)
    n_vox = vox.shape[0]
    boxes = np.empty((n_vox, 4), np.int64)
    size = np.empty(n_vox, np.int64)
    # Pass 1: candidate boxes; their areas bound each voxel's entries (one slot per patch).
    for n in prange(n_vox):
        r0, r1, c0, c1 = _box(proj, offsets, vox[n, 0], vox[n, 1], vox[n, 2], h, w)
        boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3] = r0, r1, c0, c1
        size[n] = max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
    start = np.zeros(n_vox, np.int64)
    for n in range(1, n_vox):
        start[n] = start[n - 1] + size[n - 1]
    capacity = start[n_vox - 1] + size[n_vox - 1] if n_vox else 0
    count = np.empty(n_vox, np.int64)
    patch = np.empty(capacity, np.int32)
    weight = np.empty(capacity, np.float64)
    # Pass 2: the exact Joseph weight on every patch of the box; keep the nonzero ones.
    for n in prange(n_vox):
        e = start[n]
        for r in range(boxes[n, 0], boxes[n, 1] + 1):
            for c in range(boxes[n, 2], boxes[n, 3] + 1):
                ray = r * w + c
                vm = float(vox[n, axis[ray]])
                if vm < k_range[ray, 0] or vm > k_range[ray, 1]:
                    continue  # slice v_m is not between the source and the patch centre
                # Bilinear tents on slice v_m; along m itself the tent is exactly 1.
                wgt = step_mm[ray] * value[n]
                for a in range(3):
                    wgt *= max(0.0, 1.0 - abs(origin[ray, a] + vm * slope[ray, a] - vox[n, a]))
                if wgt > 0.0:
                    patch[e] = ray
                    weight[e] = wgt
                    e += 1
        count[n] = e - start[n]
    return start, count, patch, weight


def footprints(grid: CoarseGrid, view: View, patch: int) -> Footprints:
    """Sparse footprints of a coarse grid's tissue voxels on ``view.downsample(patch)``.

    The footprint of voxel v on the ray to patch centre Q is ``value_v * L * w_a * w_b``
    (value x mm): what `project` gives for the volume that is zero except for v.

    Args:
        grid: the coarse grid and its tissue voxels (``grid.vox``, ``grid.value``).
        view: the view (full-resolution detector); its shape must be divisible by `patch`.
        patch: patch size in detector pixels.

    Returns:
        `Footprints` of the voxels, in the order of ``grid.vox``.
    """
    coarse_view = view.downsample(patch)
    lin_inv, shift = grid.inv_affine[:3, :3], grid.inv_affine[:3, 3]
    s = lin_inv @ coarse_view.source + shift
    det = lin_inv @ coarse_view.detector_center + shift
    du, dv = lin_inv @ coarse_view.u, lin_inv @ coarse_view.v
    h, w = coarse_view.shape
    lin = np.ascontiguousarray(grid.volume.affine[:3, :3])
    return Footprints(*_footprints(grid.vox, grid.value, s, det, du, dv, h, w, lin))
