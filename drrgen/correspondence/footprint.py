"""Sparse Joseph footprints of single coarse voxels on the patches of a view.

Joseph weight of one ray: for the ray from the source S to a pixel centre Q (coarse index
space, d = Q - S) Joseph's method steps along the dominant axis m = argmax |d_c|. A volume
that is zero except for voxel v = (v_m, v_a, v_b) contributes on slice v_m only, where the ray
sits at ``(a, b) = (S_a, S_b) + t (d_a, d_b)`` with ``t = (v_m - S_m) / d_m`` in [0, 1]; the
bilinear weight is ``max(0, 1 - |a - v_a|) * max(0, 1 - |b - v_b|)`` and the projector
multiplies by the step length ``L = ||A d|| / |d_m|`` (mm). So v weighs
``value_v * L * w_a * w_b`` on that ray, exactly what projecting the one-voxel volume gives.

Footprint on a patch: the mean of that weight over s x s sub-rays, to the pixel centres of
the sub-ray detector (`sub_ray_view`: pitch patch / s pixels, each patch a block of s x s of
its pixels, sub-pixel centres at ``(q + 1/2) / s - 1/2`` patch widths from the patch centre,
q = 0 .. s - 1 along each detector axis). That is the one-voxel projection onto the finer
detector average-pooled to patches, as pooling pixel-level projections to patches does;
s = 1 is the patch-centre ray alone.

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
    for c in range(3):  # element loop: slice assignments compile slowly (README)
        out[2, c] = n[c]
    out[2, 3] = -np.dot(n, s)
    return out


def pinhole_matrix(view: View) -> np.ndarray:
    """(3, 4) pinhole map of `view`: homogeneous LPS mm (x, y, z, 1) -> (row d, col d, d)."""
    h, w = view.shape
    return pinhole(view.source, view.detector_center, view.u, view.v, h, w)


# Columns of a ray table row (`_rays`): one 64-byte row per ray, all a weight needs.
_M, _K_LO, _K_HI, _STEP, _O_A, _S_A, _O_B, _S_B = range(8)


@njit(cache=True)
def _rays(s, det, du, dv, h, w, lin):
    """Joseph slice form of the rays from s to every pixel centre (index space): (h w, 8).

    A ray steps along its dominant axis m (the first of the largest |d_c|, like np.argmax);
    on slice ``x_m = k`` it sits at ``x_a = o_a + k s_a`` and ``x_b = o_b + k s_b`` for the
    other axes a < b. Row: m, the slice range [k_lo, k_hi] between the source and the pixel
    centre, the step length ``||lin d|| / |d_m|`` (mm), o_a, s_a, o_b, s_b.
    """
    table = np.empty((h * w, 8))
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
            length2 = 0.0
            for a in range(3):
                mm = lin[a, 0] * d[0] + lin[a, 1] * d[1] + lin[a, 2] * d[2]
                length2 += mm * mm
            row = table[n]
            row[_M] = m
            row[_K_LO] = min(s[m], s[m] + d[m])
            row[_K_HI] = max(s[m], s[m] + d[m])
            row[_STEP] = np.sqrt(length2) / abs(d[m])
            q = _O_A
            for a in range(3):
                if a != m:
                    slope = d[a] / d[m]
                    row[q], row[q + 1] = s[a] - s[m] * slope, slope
                    q += 2
    return table


@njit(cache=True)
def _reach(proj, axis):
    """(3,) bounds (row, col, depth) of the image under `proj` of the offsets a voxel's
    nonzero-weight region spans around its centre.

    If every ray steps along one axis m, a ray with a nonzero Joseph weight for voxel v
    crosses the slice x_m = v_m inside the square |x_a - v_a| < 1, |x_b - v_b| < 1 (a, b the
    other axes); otherwise it crosses the cube [v - 1, v + 1]^3. Offsets within it map to
    |row| <= out[0], |col| <= out[1], |depth| <= out[2] (homogeneous units).
    """
    m = axis[0]
    mixed = False
    for ray in range(axis.shape[0]):
        mixed |= axis[ray] != m
    out = np.zeros(3)
    for q in range(3):
        for c in range(3):
            if mixed or c != m:
                out[q] += abs(proj[q, c])
    return out


@njit(cache=True)
def _box(proj, reach, i, j, k, h, w):
    """Pixels (r0, r1, c0, c1), inclusive, whose centres can see voxel (i, j, k).

    A ray with a nonzero weight passes through the voxel's square (or cube, `_reach`), so its
    pixel centre is the projection of a point of it: with the centre at homogeneous
    (hr, hc, hw) and an offset's image (dr, dc, dd), the row moves by
    (dr - row * dd) / (hw + dd), at most (reach_r + |row| reach_d) / (hw - reach_d) when the
    whole square is in front of the source (hw > reach_d); likewise the column.
    """
    hr = proj[0, 0] * i + proj[0, 1] * j + proj[0, 2] * k + proj[0, 3]
    hc = proj[1, 0] * i + proj[1, 1] * j + proj[1, 2] * k + proj[1, 3]
    hw = proj[2, 0] * i + proj[2, 1] * j + proj[2, 2] * k + proj[2, 3]
    near = hw - reach[2]
    if near <= 0.0:
        return 0, h - 1, 0, w - 1  # the region reaches the source plane: any pixel may see it
    row, col = hr / hw, hc / hw
    inv = 1.0 / near
    dr = (reach[0] + abs(row) * reach[2]) * inv
    dc = (reach[1] + abs(col) * reach[2]) * inv
    # A small margin against rounding (the exact weight rejects the extra pixels); clipped to
    # the detector (+-1) before the int conversion, which a huge float would overflow.
    r0 = int(np.ceil(max(row - dr - 1e-6, -1.0)))
    r1 = int(np.floor(min(row + dr + 1e-6, float(h))))
    c0 = int(np.ceil(max(col - dc - 1e-6, -1.0)))
    c1 = int(np.floor(min(col + dc + 1e-6, float(w))))
    return max(0, r0), min(h - 1, r1), max(0, c0), min(w - 1, c1)


@njit(cache=True)
def _weight(ray, i, j, k, value):
    """Joseph weight ``value * L * w_a * w_b`` of voxel (i, j, k) on one ray (`_rays` row).

    The ray meets slice v_m once; the bilinear tents of the other two axes weigh it there
    (along m itself the tent is exactly 1). 0 if v_m is not between source and pixel centre.
    """
    m = int(ray[_M])
    vm, va, vb = (i, j, k) if m == 0 else ((j, i, k) if m == 1 else (k, i, j))
    if vm < ray[_K_LO] or vm > ray[_K_HI]:
        return 0.0
    ta = max(0.0, 1.0 - abs(ray[_O_A] + vm * ray[_S_A] - va))
    tb = max(0.0, 1.0 - abs(ray[_O_B] + vm * ray[_S_B] - vb))
    return ray[_STEP] * value * ta * tb


@njit(parallel=True, cache=True)
def _footprints(vox, value, s, det, du, dv, h, w, sub, lin):
    """Footprints of voxels vox (n, 3) with values (n,) on an (h, w) patch detector.

    s, det, du, dv describe the sub-ray detector (h sub, w sub) in index space: its sub x sub
    pixel blocks are the patches. Returns start, count (n,) int64 and patch (capacity,) int32,
    weight (capacity,) float64.
    """
    hf, wf = h * sub, w * sub
    rays = _rays(s, det, du, dv, hf, wf, lin)
    proj = pinhole(s, det, du, dv, hf, wf)
    reach = _reach(proj, rays[:, _M])
    # Patch row (column) of each sub-ray row (column): a table, not an integer division per use.
    of = np.arange(max(hf, wf)) // sub
    n_vox = vox.shape[0]
    boxes = np.empty((n_vox, 4), np.int64)
    size = np.empty(n_vox, np.int64)
    # Pass 1: candidate boxes of sub-rays, and the patches they fall in; the patch box's area
    # bounds each voxel's entries (one slot per patch).
    for n in prange(n_vox):
        r0, r1, c0, c1 = _box(proj, reach, vox[n, 0], vox[n, 1], vox[n, 2], hf, wf)
        if r1 < r0 or c1 < c0:
            r0, r1, c0, c1 = 0, -1, 0, -1  # empty: no sub-ray comes near the voxel
            size[n] = 0
        else:
            size[n] = (of[r1] - of[r0] + 1) * (of[c1] - of[c0] + 1)
        boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3] = r0, r1, c0, c1
    start = np.zeros(n_vox, np.int64)
    for n in range(1, n_vox):
        start[n] = start[n - 1] + size[n - 1]
    capacity = start[n_vox - 1] + size[n_vox - 1] if n_vox else 0
    count = np.empty(n_vox, np.int64)
    patch = np.empty(capacity, np.int32)
    weight = np.empty(capacity, np.float64)
    scale = 1.0 / (sub * sub)
    # Pass 2: per patch of the box, the mean Joseph weight over its sub x sub sub-rays (those
    # outside the box weigh 0); keep the nonzero ones. Rows and columns ascend, so do patches.
    for n in prange(n_vox):
        e = start[n]
        r0, r1, c0, c1 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        vi, vj, vk, vv = vox[n, 0], vox[n, 1], vox[n, 2], value[n]
        for pr in range(of[r0], of[r1] + 1 if r1 >= r0 else 0):
            for pc in range(of[c0], of[c1] + 1):
                acc = 0.0
                for r in range(max(r0, pr * sub), min(r1, pr * sub + sub - 1) + 1):
                    for c in range(max(c0, pc * sub), min(c1, pc * sub + sub - 1) + 1):
                        acc += _weight(rays[r * wf + c], vi, vj, vk, vv)
                if acc > 0.0:
                    patch[e] = pr * w + pc
                    weight[e] = acc * scale  # exact for sub = 1: the centre-ray weight itself
                    e += 1
        count[n] = e - start[n]
    return start, count, patch, weight


def sub_ray_view(view: View, patch: int, supersample: int = 1) -> View:
    """The detector of the sub-rays: pixels ``patch / supersample`` wide, so that each patch is a
    block of supersample x supersample of them.

    Sub-pixel (r, c) lies in patch (r // s, c // s); its centre sits at the offset
    ``((q + 0.5) / s - 0.5)`` patch widths (q = r mod s, resp. c mod s) from the patch centre,
    so the sub-rays are spread uniformly over the patch. For s = 1 this is
    ``view.downsample(patch)``; for s dividing `patch` it is ``view.downsample(patch // s)``.

    Args:
        view: the full-resolution view, shape (H, W) divisible by `patch`.
        patch: patch size in detector pixels.
        supersample: s >= 1, sub-rays per patch side.

    Returns:
        A `View` of shape (H / patch * s, W / patch * s) with pixel steps u, v times patch / s.
    """
    h, w = view.shape
    if h % patch or w % patch:
        raise ValueError(f"detector {view.shape} is not divisible by {patch}")
    step = patch / supersample  # an exact float whenever s divides patch
    shape = (h // patch * supersample, w // patch * supersample)
    return View(view.source, view.detector_center, view.u * step, view.v * step, shape)


def footprints(grid: CoarseGrid, view: View, patch: int, supersample: int = 1) -> Footprints:
    """Sparse footprints of a coarse grid's tissue voxels on the patches of `view`.

    The footprint of voxel v on patch a is the mean over a's supersample x supersample sub-rays
    (`sub_ray_view`) of the Joseph weight ``value_v * L * w_a * w_b`` (value x mm): what
    `project` gives on the sub-ray detector for the volume that is zero except for v,
    average-pooled to patches. supersample = 1 samples each patch at its centre ray only.

    Args:
        grid: the coarse grid and its tissue voxels (``grid.vox``, ``grid.value``).
        view: the view (full-resolution detector); its shape must be divisible by `patch`.
        patch: patch size in detector pixels.
        supersample: sub-rays per patch side, >= 1.

    Returns:
        `Footprints` of the voxels, in the order of ``grid.vox``.
    """
    fine = sub_ray_view(view, patch, supersample)
    lin_inv, shift = grid.inv_affine[:3, :3], grid.inv_affine[:3, 3]
    s = lin_inv @ fine.source + shift
    det = lin_inv @ fine.detector_center + shift
    du, dv = lin_inv @ fine.u, lin_inv @ fine.v
    h, w = fine.shape[0] // supersample, fine.shape[1] // supersample
    lin = np.ascontiguousarray(grid.volume.affine[:3, :3])
    return Footprints(
        *_footprints(grid.vox, grid.value, s, det, du, dv, h, w, int(supersample), lin)
    )


@njit(parallel=True, cache=True)
def _peak_normalise(start, count, weight):
    for n in prange(start.shape[0]):
        peak = 0.0
        for e in range(start[n], start[n] + count[n]):
            peak = max(peak, weight[e])
        if peak > 0.0:
            for e in range(start[n], start[n] + count[n]):
                weight[e] /= peak


def peak_normalised(fp: Footprints) -> Footprints:
    """The footprints with each voxel's weights divided by their maximum (peak 1 per voxel).

    The paper's single-voxel projection "normalised to [0, 1]": what remains is where on the
    detector a voxel lands and how its weight spreads over neighbouring patches, not its
    density or path length. Returns new `Footprints` (the input is unchanged).
    """
    weight = fp.weight.copy()
    _peak_normalise(fp.start, fp.count, weight)
    return Footprints(fp.start, fp.count, fp.patch, weight)
