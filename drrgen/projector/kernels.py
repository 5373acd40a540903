"""Numba kernels of the cone-beam Joseph projector.

All geometry here is in voxel-index space of the root volume, where the ray from the source
``s`` to a pixel centre ``p`` is ``s + t (p - s)``, t in [0, 1]. Joseph's method (1982) steps
one slice at a time along the ray's dominant index axis ``m`` and interpolates bilinearly
inside each slice; the sum times the mm length of one slice step is the line integral.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Rays are processed in tiles of TILE x TILE neighbouring detector pixels, each stepped
# through the volume CHUNK slices at a time (measured best on 256^3: 16 and 64).
TILE = 16
CHUNK = 64
# Interior slices keep this far (in voxels) from the box faces, so that float32 rounding of
# the ray coordinate can never make the unmasked fast path read a voxel outside the box.
_EPS = 1e-3


@njit(cache=True, inline="always")
def _other_axes(m):
    """The two index axes other than ``m``, ascending (the layout of `Volume.axis_major`)."""
    if m == 0:
        return 1, 2
    if m == 1:
        return 0, 2
    return 0, 1


@njit(cache=True, inline="always")
def _clip(s_m, s_x, inv_slope, x_lo, x_hi, kmin, kmax):
    """Narrow [kmin, kmax] to the slices k where the ray's coordinate x is in [x_lo, x_hi].

    x(k) = s_x + (k - s_m) / inv_slope is linear in k, so the answer is one interval
    (``inv_slope = d_m / d_x``, infinite when the ray is parallel to x: d_x is 0 or so small
    that the ratio overflows).
    """
    if math.isinf(inv_slope):
        if s_x < x_lo or s_x > x_hi:
            return kmax + 1, kmax
        return kmin, kmax
    k0 = s_m + (x_lo - s_x) * inv_slope
    k1 = s_m + (x_hi - s_x) * inv_slope
    first, last = min(k0, k1), max(k0, k1)
    # A ray nearly parallel to a face crosses it thousands of millions of slices away (or at
    # +-inf): compare in float first, so no such value is ever cast to an integer (the int32
    # range arrays would wrap it into a huge range read out of bounds).
    if first > kmax or last < kmin:
        return kmax + 1, kmax
    if first > kmin:
        kmin = math.ceil(first)
    if last < kmax:
        kmax = math.floor(last)
    return kmin, kmax


@njit(parallel=True, cache=True)
def ray_setup(src, det, du, dv, h, w, lo, hi, lin):
    """Per-ray Joseph parameters for an (h, w) detector, in root index space.

    Args:
        src, det, du, dv: (3,) float64 source, detector centre, column and row steps (index units).
        h, w: detector rows and columns.
        lo, hi: (3,) int64 box [lo, hi) of voxels that carry values (the crop), (i, j, k).
        lin: (3, 3) float64 index -> mm linear map (affine without translation).

    Returns:
        axis (n,) int8 dominant axis; a0, da, b0, db (n,) float32 with the ray at
        (a0 + k da, b0 + k db) on slice k (a < b the other axes); kmin, kmax (n,) int32
        inclusive range of slices with any non-zero weight (empty when kmin > kmax);
        kin0, kin1 (n,) int32 the sub-range where all four bilinear neighbours are inside the
        box (kmin <= kin0, kin1 <= kmax; kin0 = kmax + 1 when there is none); step_mm (n,)
        float32 mm travelled per slice.
    """
    n = h * w
    axis = np.empty(n, np.int8)
    a0 = np.empty(n, np.float32)
    da = np.empty(n, np.float32)
    b0 = np.empty(n, np.float32)
    db = np.empty(n, np.float32)
    ks = np.empty((4, n), np.int32)
    step_mm = np.empty(n, np.float32)
    for r in prange(h):
        for c in range(w):
            i = r * w + c
            oc = c - (w - 1) / 2.0
            orow = r - (h - 1) / 2.0
            d0 = det[0] + oc * du[0] + orow * dv[0] - src[0]
            d1 = det[1] + oc * du[1] + orow * dv[1] - src[1]
            d2 = det[2] + oc * du[2] + orow * dv[2] - src[2]
            m = 0
            if abs(d1) > abs(d0):
                m = 1
            if abs(d2) > max(abs(d0), abs(d1)):
                m = 2
            dvec = (d0, d1, d2)
            ax, bx = _other_axes(m)
            dm, dax, dbx = dvec[m], dvec[ax], dvec[bx]
            sm, sa, sb = src[m], src[ax], src[bx]
            # Slices inside the box along m and inside the source-to-pixel segment.
            k_lo = max(lo[m], math.ceil(min(sm, sm + dm)))
            k_hi = min(hi[m] - 1, math.floor(max(sm, sm + dm)))
            # Any weight: coordinate within one voxel of the box (zero ramp beyond the edge).
            # One division per axis instead of one per face (setup is ~10 % of a crop's DRR).
            inv_a = dm / dax if dax != 0.0 else math.inf
            inv_b = dm / dbx if dbx != 0.0 else math.inf
            k0, k1 = _clip(sm, sa, inv_a, lo[ax] - 1.0, hi[ax] + 0.0, k_lo, k_hi)
            k0, k1 = _clip(sm, sb, inv_b, lo[bx] - 1.0, hi[bx] + 0.0, k0, k1)
            # All four neighbours inside the box: the unmasked fast path.
            j0, j1 = _clip(sm, sa, inv_a, lo[ax] + _EPS, hi[ax] - 1.0 - _EPS, k0, k1)
            j0, j1 = _clip(sm, sb, inv_b, lo[bx] + _EPS, hi[bx] - 1.0 - _EPS, j0, j1)
            if j0 > j1:
                j0, j1 = k1 + 1, k1
            axis[i] = m
            ks[0, i], ks[1, i], ks[2, i], ks[3, i] = k0, k1, j0, j1
            ra = dax / dm
            rb = dbx / dm
            da[i] = ra
            db[i] = rb
            a0[i] = sa - sm * ra
            b0[i] = sb - sm * rb
            x = lin[0, 0] * d0 + lin[0, 1] * d1 + lin[0, 2] * d2
            y = lin[1, 0] * d0 + lin[1, 1] * d1 + lin[1, 2] * d2
            z = lin[2, 0] * d0 + lin[2, 1] * d1 + lin[2, 2] * d2
            step_mm[i] = math.sqrt(x * x + y * y + z * z) / abs(dm)
    return axis, a0, da, b0, db, ks[0], ks[1], ks[2], ks[3], step_mm


@njit(cache=True, inline="always")
def _sample_masked(vol, k, pa, pb, lo_a, hi_a, lo_b, hi_b):
    """Bilinear sample on slice k of `vol` (padded layout) with voxels outside the box as 0."""
    pa = min(max(pa, np.float32(lo_a - 1)), np.float32(hi_a))
    pb = min(max(pb, np.float32(lo_b - 1)), np.float32(hi_b))
    fa0 = math.floor(pa)
    fb0 = math.floor(pb)
    fa = pa - fa0
    fb = pb - fb0
    ia = int(fa0)
    ib = int(fb0)
    zero = np.float32(0.0)
    wa0 = (np.float32(1.0) - fa) if lo_a <= ia < hi_a else zero
    wa1 = fa if ia + 1 < hi_a else zero
    wb0 = (np.float32(1.0) - fb) if lo_b <= ib < hi_b else zero
    wb1 = fb if ib + 1 < hi_b else zero
    v0 = wb0 * vol[ia + 1, ib + 1, k] + wb1 * vol[ia + 1, ib + 2, k]
    v1 = wb0 * vol[ia + 2, ib + 1, k] + wb1 * vol[ia + 2, ib + 2, k]
    return wa0 * v0 + wa1 * v1


# The interior sum may be reassociated: LLVM then vectorises it over slices with gathers
# (it will not vectorise loops that store to arrays). The order is fixed at compile time, so
# results stay bitwise identical for any thread count.
@njit(cache=True, fastmath={"reassoc", "contract"})
def _interior_sum(flat, s_a, s_b, k0, k1, a0, da, b0, db):
    """Sum of unmasked bilinear samples on slices [k0, k1) of the flattened padded layout.

    Coordinates are >= 0 here (inside the box), so truncation is floor.
    """
    acc = np.float32(0.0)
    u_a, u_b, u_ab = np.uint64(s_a), np.uint64(s_b), np.uint64(s_a + s_b)
    for k in range(k0, k1):
        kf = np.float32(k)
        pa = a0 + kf * da
        pb = b0 + kf * db
        ia = np.int64(pa)
        ib = np.int64(pb)
        fa = pa - np.float32(ia)
        fb = pb - np.float32(ib)
        # Unsigned: no negative-index wraparound selects in the vector loop (~10 % faster).
        p = np.uint64((ia + 1) * s_a + (ib + 1) * s_b + k)
        v0 = flat[p] + fb * (flat[p + u_b] - flat[p])
        v1 = flat[p + u_a] + fb * (flat[p + u_ab] - flat[p + u_a])
        acc += v0 + fa * (v1 - v0)
    return acc


@njit(cache=True)
def _edge_sum(vol, i, a0, da, b0, db, kmin, kmax, kin0, kin1, lo_a, hi_a, lo_b, hi_b):
    """Masked samples of ray i on the slices outside its interior range (near box faces)."""
    ra0, rda, rb0, rdb = a0[i], da[i], b0[i], db[i]
    acc = np.float32(0.0)
    for k in range(kmin[i], kin0[i]):
        kf = np.float32(k)
        acc += _sample_masked(vol, k, ra0 + kf * rda, rb0 + kf * rdb, lo_a, hi_a, lo_b, hi_b)
    for k in range(max(kin1[i] + 1, kin0[i]), kmax[i] + 1):
        kf = np.float32(k)
        acc += _sample_masked(vol, k, ra0 + kf * rda, rb0 + kf * rdb, lo_a, hi_a, lo_b, hi_b)
    return acc


@njit(cache=True)
def _touch(flat, s_a, s_b, a_lo, a_hi, b_lo, b_hi, c0, c1):
    """Read one float per cache line of rows [a_lo, a_hi] x [b_lo, b_hi], slices [c0, c1).

    Why: a ray's gathers hop between rows, so each first touch of a line is a cache miss
    served one at a time (latency-bound, ~2.5x slower than in-cache samples at 256^3). These
    independent loads put the misses in flight together before the rays need the lines.
    """
    s = np.float32(0.0)
    for a in range(a_lo, a_hi + 1):
        base = (a + 1) * s_a + c0
        for b in range(b_lo, b_hi + 1):
            p = base + (b + 1) * s_b
            for off in range(0, c1 - c0, 16):
                s += flat[p + off]
    return s


@njit(parallel=True, cache=True)
def joseph_rays(
    vol,
    tile_ptr,
    rays,
    a0,
    da,
    b0,
    db,
    kmin,
    kmax,
    kin0,
    kin1,
    step_mm,
    lo_a,
    hi_a,
    lo_b,
    hi_b,
    out,
    sink,
):
    """Line integrals of the rays listed in `rays`, all with the same dominant axis.

    Rays come in tiles of neighbouring detector pixels; a tile is stepped through the volume
    in chunks of `CHUNK` slices: the chunk's rows are touched first (`_touch`), then every ray
    of the tile sums its samples in the chunk (`_interior_sum`, vectorised), so the tile's
    working set stays in cache.

    Args:
        vol: (n_a + 3, n_b + 3, n_m) float32 zero-padded layout from `Volume.axis_major`
            (the stepping axis fastest, so one ray reads nearly contiguous memory).
        tile_ptr: (n_tiles + 1,) int64; tile t holds rays[tile_ptr[t]:tile_ptr[t + 1]].
        rays: (n,) int64 ray ids; each thread owns whole tiles (no cross-thread reductions,
            bitwise identical results for any thread count).
        a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm: per-ray parameters from `ray_setup`.
        lo_a, hi_a, lo_b, hi_b: the box [lo, hi) along the in-slice axes a and b.
        out: (h * w,) float32, written at `rays`.
        sink: (n_tiles,) float32 scratch that keeps the touches from being optimised away.
    """
    s_b = vol.shape[2]
    s_a = vol.shape[1] * s_b
    flat = vol.reshape(vol.size)
    for t in prange(tile_ptr.size - 1):
        r0, r1 = tile_ptr[t], tile_ptr[t + 1]
        acc = np.zeros(r1 - r0, np.float32)
        k_lo, k_hi = 1 << 30, -1
        for q in range(r0, r1):
            i = rays[q]
            acc[q - r0] = _edge_sum(
                vol, i, a0, da, b0, db, kmin, kmax, kin0, kin1, lo_a, hi_a, lo_b, hi_b
            )
            if kin0[i] <= kin1[i]:
                k_lo, k_hi = min(k_lo, kin0[i]), max(k_hi, kin1[i] + 1)
        touched = np.float32(0.0)
        # Chunks start at multiples of CHUNK: slices [c, c + CHUNK) fill whole cache lines.
        for c in range((k_lo // CHUNK) * CHUNK, k_hi, CHUNK):
            c1 = min(c + CHUNK, k_hi)
            a_lo, a_hi, b_lo, b_hi = hi_a, lo_a - 1, hi_b, lo_b - 1
            for q in range(r0, r1):
                i = rays[q]
                if kin0[i] <= kin1[i]:
                    for kk in (c, c1):
                        ia = int(a0[i] + np.float32(kk) * da[i])
                        ib = int(b0[i] + np.float32(kk) * db[i])
                        a_lo, a_hi = min(a_lo, ia), max(a_hi, ia + 1)
                        b_lo, b_hi = min(b_lo, ib), max(b_hi, ib + 1)
            touched += _touch(
                flat,
                s_a,
                s_b,
                max(a_lo, lo_a),
                min(a_hi, hi_a - 1),
                max(b_lo, lo_b),
                min(b_hi, hi_b - 1),
                c,
                c1,
            )
            for q in range(r0, r1):
                i = rays[q]
                k0, k1 = max(c, kin0[i]), min(c1, kin1[i] + 1)
                if k0 < k1:
                    acc[q - r0] += _interior_sum(flat, s_a, s_b, k0, k1, a0[i], da[i], b0[i], db[i])
        sink[t] = touched
        for q in range(r0, r1):
            out[rays[q]] = acc[q - r0] * step_mm[rays[q]]
