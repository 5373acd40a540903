"""Numba kernels of the cone-beam Joseph projector.

All geometry here is in voxel-index space of the root volume, where the ray from the source
``s`` to a pixel centre ``p`` is ``s + t (p - s)``, t in [0, 1]. Joseph's method (1982) steps
one slice at a time along the ray's dominant index axis ``m`` and interpolates bilinearly
inside each slice; the sum times the mm length of one slice step is the line integral.

Rays are vectorised across neighbouring detector pixels: LANES rays take one step together,
each lane summing its own samples in slice order, so results do not depend on how rays are
split between threads. Neighbouring rays read neighbouring voxels, so a group's gathers stay
within a few cache lines whatever the ray slope.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from drrgen.errors import UserError
from drrgen.projector.intrinsics import (
    ROW_LANES,
    fast_gathers,
    index32,
    load_at,
    load_pair,
    row_step,
    target_has_avx512,
)
from drrgen.projector.noalias import NoAliasCompiler

# Rays are stepped together in groups of LANES neighbouring detector pixels (one SIMD lane
# each). The groups of TILE_ROWS adjacent detector lines form a tile (a band of the
# detector), which one thread steps through the volume one block of the layout's slices at a
# time: in each block it reads every row of the band's voxels in memory order, a stream
# hardware prefetchers follow. Measured on 256^3 and builder crops (benchmarks/, A/B in one
# process). The block length comes from the layout itself (a power of 2, its third axis).
LANES = ROW_LANES
TILE_ROWS = 8
# Interior steps on the row layout load the rows their rays sample (`intrinsics.row_step`,
# on CPUs with AVX-512) instead of gathering voxel by voxel: 1.6x faster per DRR on AMD Zen 4
# (whose gathers cost per element) for views along an axis, 1.0-1.2x for oblique ones, whose
# groups cross several rows. False: gathers only (the same images bitwise; tests compare).
ROW_LOADS = True
# The layout per CPU (`Volume.axis_major`): with row loads, a row along a is contiguous in
# each slice; with gathers, a voxel's slices of a block sit side by side, so one gathered
# cache line serves the next 15 steps of a ray. Gathers on the slices-inner layout are
# 1.28-1.85x faster than gathering from the row layout (AVX2-only code on AMD Zen 4, 1
# thread, 256^3, 5 views), and on Intel CPUs with fast gathers (`intrinsics.fast_gathers`)
# 1.1-1.4x faster than row loads at 1 thread, 1.03-1.33x at 2 (Xeon model 207, real 256^3
# CT, 2026-12-06).
# "auto": pick by `layout_choice()`; "rows" or "slices": force one (the images are bitwise
# the same).
LAYOUT = "auto"
# The values the kernels read: "auto" stores a volume whose values are finite and >= 0 (mu)
# as 16-bit counts of max / 65535 (`value_scale`): on the slices-inner layout as uint32 words
# that pair a voxel's count with its neighbour's along a, so a sample takes 2 gathers instead
# of 4 (`intrinsics.load_pair`; the bytes of float32), on the row layout as uint16 (half the
# bytes). Measured against float32 in one process (slices-inner, Xeon model 207, real 256^3
# chest CT, 2026-12-06): 1.12x per DRR at 1 thread and 1.10x at 2 over five views, 1.13x
# on the build's DRRs of crops; the row layout's uint16 was not measured on a CPU that uses
# it (AMD). Each voxel is then within max / 131070 of its value, finer than 1 HU for any CT
# whose range is under 65,535 HU; a DRR moves by under 5e-6 of its maximum on the chest CT.
# Volumes whose maximum exceeds MAX_OVER_MEAN times the mean of their positive values (an
# outlier would make the steps coarse for the rest; the chest CT measures 6.6, the phantoms
# 10-16) keep float32, as do volumes with negative or non-finite values, and "float32"
# forces it. The environment variable DRRGEN_PRECISION ("auto", "float32") applies when
# this is "auto". Either way every layout and thread count gives the same image bitwise.
PRECISION = "auto"
MAX_OVER_MEAN = 256.0
# Strongly oblique views (e.g. 135 deg with a 20 deg tilt): the rays of a detector row
# drift across several rows b of the layout on every slice, so row loads need up to 6 rows
# or fall back to gathers. When a row group's rays end up more than PLANE_SPREAD rows apart
# on average, `group_rays` groups rays along planes of equal db instead, which read one or
# two rows. Measured per DRR on AMD Zen 4, 1 thread, 256^3 (2026-12-06): 1.35x faster at
# (135, 20) and (20, 40) deg, 0.93x at (60, 30); forced on views below the threshold it
# was 0.6-0.9x (spread 0.3-2.9), hence the threshold. math.inf: detector rows always. Row
# layout only: gathers on the slices-inner layout were 1.17-1.35x slower with planes at
# (135, 20) deg (Xeon model 207, real CT, 1-2 threads). Grouping changes no image bit.
PLANE_SPREAD = 3.0
# Slice number beyond any volume: the start of an empty range.
NO_SLICE = 1 << 30
# Interior slices keep this far (in voxels) from the box faces, so that float32 rounding of
# the ray coordinate can never make the unmasked fast path read a voxel outside the box.
_EPS = 1e-3


def slices_inner() -> bool:
    """Whether `project` uses the slices-inner layout (gathers) rather than the row layout
    (see `layout_choice`). The images are bitwise the same either way."""
    return layout_choice()[0]


def layout_choice() -> tuple[bool, str]:
    """(slices inner, why): LAYOUT when set ("forced"); in "auto", the environment variable
    DRRGEN_LAYOUT ("rows", "slices", "auto") when set ("forced"); else slices when the
    compiled kernels gather anyway ("ROW_LOADS off", "no AVX-512") or when the CPU's gathers
    are fast ("fast gathers", `intrinsics.fast_gathers`), rows otherwise ("slow gathers")."""
    layout = LAYOUT if LAYOUT != "auto" else (os.environ.get("DRRGEN_LAYOUT") or "auto")
    if layout not in ("auto", "rows", "slices"):
        if LAYOUT != "auto":
            raise ValueError(f"kernels.LAYOUT must be 'auto', 'rows' or 'slices', not {layout!r}")
        raise UserError(f"DRRGEN_LAYOUT: must be 'auto', 'rows' or 'slices', not {layout!r}")
    if layout != "auto":
        return layout == "slices", "forced"
    if not ROW_LOADS:
        return True, "ROW_LOADS off"
    if not target_has_avx512():
        return True, "no AVX-512"
    fast = fast_gathers()
    return fast, "fast gathers" if fast else "slow gathers"


def precision_choice() -> str:
    """The precision setting, "auto" or "float32": PRECISION when set to "float32", else the
    environment variable DRRGEN_PRECISION when set (see PRECISION)."""
    choice = PRECISION if PRECISION != "auto" else (os.environ.get("DRRGEN_PRECISION") or "auto")
    if choice not in ("auto", "float32"):
        if PRECISION != "auto":
            raise ValueError(f"kernels.PRECISION must be 'auto' or 'float32', not {choice!r}")
        raise UserError(f"DRRGEN_PRECISION: must be 'auto' or 'float32', not {choice!r}")
    return choice


def value_scale(volume) -> float | None:
    """The value of one count when the kernels read `volume` (a root volume) as 16-bit
    counts: its maximum / 65535 (float32), or None for float32 values (see PRECISION:
    forced, or values that are negative, not finite, all zero, with an outlying maximum or
    so small that the step would be subnormal). Computed once per volume.

    The step is the root's: a crop whose values are far below its root's maximum is read
    with steps that are coarse relative to its own values (each voxel still within
    root max / 131070 of its value)."""
    if precision_choice() == "float32":
        return None

    def scale():
        data = volume.data
        lo, hi = float(data.min()), float(data.max())
        if not (lo >= 0.0 and 0.0 < hi < np.inf):  # NaN fails every comparison
            return None
        mean_positive = float(data.sum(dtype=np.float64)) / np.count_nonzero(data)
        step = np.float32(hi / 65535.0)
        # A subnormal step (values near 1e-36 and below) would not hold half a step exactly.
        ok = hi <= MAX_OVER_MEAN * mean_positive and step >= np.finfo(np.float32).tiny
        return float(step) if ok else None

    return volume.memo("value_scale", scale)


@njit(cache=True, inline="always")
def _clip(s_m, s_x, inv_slope, x_lo, x_hi, kmin, kmax):
    """Narrow [kmin, kmax] to the slices k where the ray's coordinate x is in [x_lo, x_hi].

    x(k) = s_x + (k - s_m) / inv_slope is linear in k, so the answer is one interval
    (``inv_slope = d_m / d_x``, infinite when the ray is parallel to x: d_x is 0 or so small
    that the ratio overflows). Slice numbers are float64 here (exact integers) and an empty
    answer is (kmax + 1, kmax). Written with selects, not branches, so that the loop over a
    detector row vectorises.
    """
    parallel = math.isinf(inv_slope)
    k0 = s_m + (x_lo - s_x) * inv_slope
    k1 = s_m + (x_hi - s_x) * inv_slope
    first, last = min(k0, k1), max(k0, k1)
    # A ray nearly parallel to a face crosses it thousands of millions of slices away (or at
    # +-inf): compare in float, so such a value never reaches an integer cast (int32 ranges
    # would wrap it into a huge range read out of bounds).
    empty = ((s_x < x_lo) | (s_x > x_hi)) if parallel else ((first > kmax) | (last < kmin))
    # [x_lo, x_hi] is empty for the interior of a box one voxel thick: min/max above would
    # turn it into a range around the face (a crop's neighbours read unmasked).
    empty |= x_lo > x_hi
    new_min = kmin if parallel else (np.ceil(first) if first > kmin else kmin)
    new_max = kmax if parallel else (np.floor(last) if last < kmax else kmax)
    return (kmax + 1.0 if empty else new_min), (kmax if empty else new_max)


@njit(cache=True, pipeline_class=NoAliasCompiler, error_model="numpy")
def _setup_row(
    r, src, det, du, dv, h, w, lo, hi, lin, axis, a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm
):
    """`ray_setup` for detector row r: noalias and selects, so the loop over columns is SIMD."""
    s0, s1, s2 = src[0], src[1], src[2]
    orow = r - (h - 1) / 2.0
    for c in range(w):
        i = r * w + c
        oc = c - (w - 1) / 2.0
        d0 = det[0] + oc * du[0] + orow * dv[0] - s0
        d1 = det[1] + oc * du[1] + orow * dv[1] - s1
        d2 = det[2] + oc * du[2] + orow * dv[2] - s2
        # Dominant axis m; a < b the other two (the layout of `Volume.axis_major`).
        m1 = abs(d1) > abs(d0)
        m2 = abs(d2) > max(abs(d0), abs(d1))
        up = m1 | m2
        dm = d2 if m2 else (d1 if m1 else d0)
        sm = s2 if m2 else (s1 if m1 else s0)
        lo_m = lo[2] if m2 else (lo[1] if m1 else lo[0])
        hi_m = hi[2] if m2 else (hi[1] if m1 else hi[0])
        dax, sa = (d0 if up else d1), (s0 if up else s1)
        lo_a, hi_a = (lo[0] if up else lo[1]), (hi[0] if up else hi[1])
        dbx, sb = (d1 if m2 else d2), (s1 if m2 else s2)
        lo_b, hi_b = (lo[1] if m2 else lo[2]), (hi[1] if m2 else hi[2])
        # Slices inside the box along m and inside the source-to-pixel segment, kept within
        # [lo_m - 1, hi_m] even when the segment is far away (safe int32 casts below).
        k_lo = min(max(np.float64(lo_m), np.ceil(min(sm, sm + dm))), np.float64(hi_m))
        k_hi = max(min(np.float64(hi_m - 1), np.floor(max(sm, sm + dm))), np.float64(lo_m - 1))
        # Any weight: coordinate within one voxel of the box (zero ramp beyond the edge).
        inv_a = dm / dax if dax != 0.0 else np.inf
        inv_b = dm / dbx if dbx != 0.0 else np.inf
        k0, k1 = _clip(sm, sa, inv_a, lo_a - 1.0, hi_a + 0.0, k_lo, k_hi)
        k0, k1 = _clip(sm, sb, inv_b, lo_b - 1.0, hi_b + 0.0, k0, k1)
        # All four neighbours inside the box: the unmasked fast path.
        j0, j1 = _clip(sm, sa, inv_a, lo_a + _EPS, hi_a - 1.0 - _EPS, k0, k1)
        j0, j1 = _clip(sm, sb, inv_b, lo_b + _EPS, hi_b - 1.0 - _EPS, j0, j1)
        none = j0 > j1
        kmin[i], kmax[i] = np.int32(k0), np.int32(k1)
        kin0[i], kin1[i] = np.int32(k1 + 1.0 if none else j0), np.int32(k1 if none else j1)
        axis[i] = np.int8(2 if m2 else (1 if m1 else 0))
        ra, rb = dax / dm, dbx / dm
        da[i], db[i] = ra, rb
        a0[i], b0[i] = sa - sm * ra, sb - sm * rb
        x = lin[0, 0] * d0 + lin[0, 1] * d1 + lin[0, 2] * d2
        y = lin[1, 0] * d0 + lin[1, 1] * d1 + lin[1, 2] * d2
        z = lin[2, 0] * d0 + lin[2, 1] * d1 + lin[2, 2] * d2
        step_mm[i] = math.sqrt(x * x + y * y + z * z) / abs(dm)


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
    a0, da = np.empty(n, np.float32), np.empty(n, np.float32)
    b0, db = np.empty(n, np.float32), np.empty(n, np.float32)
    kmin, kmax = np.empty(n, np.int32), np.empty(n, np.int32)
    kin0, kin1 = np.empty(n, np.int32), np.empty(n, np.int32)
    step_mm = np.empty(n, np.float32)
    for r in prange(h):
        _setup_row(
            r, src, det, du, dv, h, w, lo, hi, lin, axis, a0, da, b0, db, kmin, kmax, kin0,
            kin1, step_mm,
        )  # fmt: skip
    return axis, a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm


@njit(cache=True)
def group_rays(axis, kmin, kmax, a0, da, b0, db, h, w, m, along_rows, plane_spread):
    """Rays of dominant axis `m` that hit the volume, in groups of LANES neighbouring pixels.

    Groups run along detector rows (or columns, `_row_groups`), or, when the rays of those
    groups end up more than `plane_spread` rows b apart on average (strongly oblique views),
    along the detector traces of planes of equal db (`_plane_keys`, `_plane_groups`), whose
    rays read one or two rows b on every slice. Either way each ray sums its samples in slice
    order with the same arithmetic (masked or not), so both give the same image bitwise, for
    any thread count.

    Args:
        axis, kmin, kmax, b0, db: (h * w,) per-ray outputs of `ray_setup`.
        h, w: detector rows and columns.
        m: the dominant axis to collect.
        a0, da: (h * w,) ray_setup's a at slice 0 and its slope: a tile's groups are
            ordered by a (`_order_tiles`).
        along_rows: the detector direction that moves along the layout's middle axis a:
            rows (True) or columns (False); a group's pixels follow it, so its voxels are
            neighbours in memory.
        plane_spread: rows b (mean over row groups) above which planes are used (0: wherever
            the rows drift at all, math.inf: never).

    Returns:
        lanes (n_groups, LANES) int64 pixel ids, -1 for empty lanes; tile_ptr (n_tiles + 1,)
        int64, tile t holding groups tile_ptr[t]:tile_ptr[t + 1] (TILE_ROWS adjacent lines).
    """
    lanes, tile_ptr = _row_groups(axis, kmin, kmax, h, w, m, along_rows)
    if plane_spread < np.inf and _mean_row_spread(lanes, b0, db, kmin, kmax) > plane_spread:
        keys, n_keys = _plane_keys(axis, kmin, kmax, db, h, w, m)
        if n_keys > 0:
            lanes, tile_ptr = _plane_groups(keys, n_keys, h, w, along_rows)
    _order_tiles(lanes, tile_ptr, a0, da, kmin, kmax)
    return lanes, tile_ptr


@njit(cache=True)
def _argsort_stable(x):
    """Indices that sort x ascending, ties kept in order: a bottom-up merge sort (Numba's
    own `np.argsort(kind="mergesort")` takes 3 s to compile on a fresh clone)."""
    n = x.size
    order, spare = np.arange(n), np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j = lo, mid
            for out in range(lo, hi):
                if i < mid and (j >= hi or x[order[i]] <= x[order[j]]):
                    spare[out] = order[i]
                    i += 1
                else:
                    spare[out] = order[j]
                    j += 1
        order, spare = spare, order
        width *= 2
    return order


@njit(cache=True)
def _order_tiles(lanes, tile_ptr, a0, da, kmin, kmax):
    """Sort each tile's groups by a (ascending) at their first ray's middle slice, in place.

    Consecutive groups then read neighbouring voxels forwards in memory, whatever the
    detector's orientation relative to the volume's axes: a CT stored with a flipped axis
    (e.g. RAS files in LPS) otherwise walks each row backwards, 1.5x slower per DRR at 90 deg
    on AMD Zen 4; the lines of an oblique view's plane groups start at different places.
    The order changes no image: each ray sums its own samples.
    """
    mid_a = np.empty(lanes.shape[0], np.float64)
    for g in range(lanes.shape[0]):
        i = lanes[g, 0]
        for lane in range(LANES):
            if i < 0:
                i = lanes[g, lane]
        mid_a[g] = a0[i] + 0.5 * (kmin[i] + kmax[i]) * da[i]
    # Element loops, not `lanes[n0:n1] = lanes[order]`: Numba takes 5 s to compile a 2-D
    # slice assignment, paid on a fresh clone's first build.
    moved = np.empty((lanes.shape[0], LANES), lanes.dtype)
    for t in range(tile_ptr.size - 1):
        n0, n1 = tile_ptr[t], tile_ptr[t + 1]
        order = _argsort_stable(mid_a[n0:n1])
        for r in range(n1 - n0):
            for lane in range(LANES):
                moved[r, lane] = lanes[n0 + order[r], lane]
        for r in range(n1 - n0):
            for lane in range(LANES):
                lanes[n0 + r, lane] = moved[r, lane]


@njit(cache=True)
def _mean_row_spread(lanes, b0, db, kmin, kmax):
    """Mean over groups of how many rows b apart their rays are at either end of their slices."""
    total = 0.0
    for g in range(lanes.shape[0]):
        lo0 = lo1 = np.inf
        hi0 = hi1 = -np.inf
        k0, k1 = NO_SLICE, -1
        for i in lanes[g]:
            if i >= 0:
                k0, k1 = min(k0, kmin[i]), max(k1, kmax[i])
        for i in lanes[g]:
            if i >= 0:
                x0, x1 = b0[i] + k0 * db[i], b0[i] + k1 * db[i]
                lo0, hi0, lo1, hi1 = min(lo0, x0), max(hi0, x0), min(lo1, x1), max(hi1, x1)
        total += max(hi0 - lo0, hi1 - lo1)
    return total / max(lanes.shape[0], 1)


@njit(cache=True)
def _plane_keys(axis, kmin, kmax, db, h, w, m):
    """Per pixel: which plane of equal db (through the source, containing axis a) its ray is in.

    Rays with the same slope db sample the same row b on every slice (b = s_b + (k - s_m) db).
    The planes' traces on the detector are lines through the vanishing point of axis a: the
    rows when the detector faces the slices squarely, slanted lines in a tilted view, where
    the rays of one detector row drift across several rows b. Keys number the planes one
    pixel apart: round((db - db_ref) / spacing), spacing the mean |grad db| per pixel.
    Returns (keys (h * w,) int64 from 0, -1 for rays not collected; n_keys), n_keys 0 when db
    gives no usable spacing (all equal, or not finite).
    """
    keys = np.full(h * w, -1, np.int64)
    total, count, ref = 0.0, 0, np.nan
    for r in range(h):
        for c in range(w):
            i = r * w + c
            if axis[i] != m or kmin[i] > kmax[i]:
                continue
            if not np.isfinite(db[i]):  # dm == 0: no plane to speak of; keep detector rows
                return keys, 0
            if np.isnan(ref):
                ref = np.float64(db[i])
            g_r = np.float64(db[i + w]) - db[i] if r + 1 < h and axis[i + w] == m else 0.0
            g_c = np.float64(db[i + 1]) - db[i] if c + 1 < w and axis[i + 1] == m else 0.0
            if g_r != 0.0 or g_c != 0.0:
                total += math.sqrt(g_r * g_r + g_c * g_c)
                count += 1
    spacing = total / count if count > 0 else 0.0
    if not (np.isfinite(spacing) and spacing > 0.0):
        return keys, 0
    lo, hi = np.inf, -np.inf
    for i in range(h * w):
        if axis[i] == m and kmin[i] <= kmax[i]:
            key = np.round((np.float64(db[i]) - ref) / spacing)
            lo, hi = min(lo, key), max(hi, key)
    if hi - lo >= 4 * (h + w):  # db is not smooth across the detector
        return keys, 0
    for i in range(h * w):
        if axis[i] == m and kmin[i] <= kmax[i]:
            keys[i] = np.int64(np.round((np.float64(db[i]) - ref) / spacing) - lo)
    return keys, np.int64(hi - lo) + 1


@njit(cache=True)
def _plane_groups(keys, n_keys, h, w, along_rows):
    """Groups of LANES pixels of one plane key (`_plane_keys`), consecutive along its line.

    Returns (lanes, tile_ptr) as `group_rays`; a tile holds the groups of TILE_ROWS adjacent
    keys, key after key (`_order_tiles` then sorts them along a: 1.4x faster per DRR at
    (60, 30) deg than key after key).
    """
    n_lines, n_along = (h, w) if along_rows else (w, h)
    # Counting sort by key, stable in the order along the lines.
    start = np.zeros(n_keys + 1, np.int64)
    for i in range(h * w):
        if keys[i] >= 0:
            start[keys[i] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    order = np.empty(start[n_keys], np.int64)
    fill = start[:n_keys].copy()
    for pos in range(n_along):
        for line in range(n_lines):
            pix = line * w + pos if along_rows else pos * w + line
            if keys[pix] >= 0:
                order[fill[keys[pix]]] = pix
                fill[keys[pix]] += 1
    n_groups = 0
    for k in range(n_keys):
        n_groups += (start[k + 1] - start[k] + LANES - 1) // LANES
    lanes = np.full((n_groups, LANES), -1, np.int64)
    tile_ptr = np.zeros((n_keys + TILE_ROWS - 1) // TILE_ROWS + 1, np.int64)
    n, t = 0, 0
    for line0 in range(0, n_keys, TILE_ROWS):
        for k in range(line0, min(line0 + TILE_ROWS, n_keys)):
            for c0 in range(start[k], start[k + 1], LANES):
                for lane in range(min(LANES, start[k + 1] - c0)):
                    lanes[n, lane] = order[c0 + lane]
                n += 1
        if n > tile_ptr[t]:
            t += 1
            tile_ptr[t] = n
    return lanes, tile_ptr[: t + 1]


@njit(cache=True)
def _row_groups(axis, kmin, kmax, h, w, m, along_rows):
    """`group_rays` along detector rows (or columns): groups of LANES consecutive pixels.

    Args:
        axis, kmin, kmax: (h * w,) per-ray outputs of `ray_setup`.
        h, w: detector rows and columns.
        m: the dominant axis to collect.
        along_rows: a group is LANES consecutive columns of one detector row (True) or LANES
            consecutive rows of one column (False); pick the detector direction that moves
            along the layout's middle axis, so a group's voxels are neighbours in memory.

    Returns:
        lanes (n_groups, LANES) int64 pixel ids, -1 for empty lanes; tile_ptr (n_tiles + 1,)
        int64, tile t holding groups tile_ptr[t]:tile_ptr[t + 1]: the groups of TILE_ROWS
        adjacent lines, the line index varying fastest (the TILE_ROWS groups of one stretch
        of LANES pixels, then the next stretch).
    """
    n_lines, n_along = (h, w) if along_rows else (w, h)
    per_line = (n_along + LANES - 1) // LANES
    lanes = np.full((n_lines * per_line, LANES), -1, np.int64)
    tile_ptr = np.zeros((n_lines + TILE_ROWS - 1) // TILE_ROWS + 1, np.int64)
    n, t = 0, 0
    for line0 in range(0, n_lines, TILE_ROWS):
        for c0 in range(0, n_along, LANES):
            for line in range(line0, min(line0 + TILE_ROWS, n_lines)):
                used = False
                for lane in range(min(LANES, n_along - c0)):
                    pix = line * w + c0 + lane if along_rows else (c0 + lane) * w + line
                    if axis[pix] == m and kmin[pix] <= kmax[pix]:
                        lanes[n, lane] = pix
                        used = True
                n += used
        if n > tile_ptr[t]:
            t += 1
            tile_ptr[t] = n
    return lanes[:n], tile_ptr[: t + 1]


@njit(cache=True, inline="always")
def _slice_offset(k, s_blk, s_k, shift):
    """int32 flat offset of slice k in the layout: its block's start plus its slice's rows."""
    return np.int32((k >> shift) * s_blk + (k & ((1 << shift) - 1)) * s_k)


def _corners(flat, p, w_a, w_b):
    """The four bilinear neighbours (f00, f01, f10, f11) as float32 at layout offset p: the
    entries p, p + w_a, p + w_b and p + w_b + w_a. Compiled per layout dtype (the overload
    below): 4 `load_at` from float32 values or uint16 counts, 2 `load_pair` from uint32
    words of paired counts (2 gathers per sample instead of 4)."""
    raise NotImplementedError("called from Numba-compiled code only")


@overload(_corners, inline="always")
def _corners_by_dtype(flat, p, w_a, w_b):
    if flat.dtype == types.uint32:

        def pairs(flat, p, w_a, w_b):
            f00, f01 = load_pair(flat, p, np.int32(0), w_a)
            f10, f11 = load_pair(flat, p, w_b, w_a)
            return f00, f01, f10, f11

        return pairs

    def values(flat, p, w_a, w_b):
        # load_pair would read the same, but its tuples cost 8 % here (float32, 1 thread).
        f00, f01 = load_at(flat, p, np.int32(0)), load_at(flat, p, w_a)
        f10, f11 = load_at(flat, p, w_b), load_at(flat, p, np.int32(w_b + w_a))
        return f00, f01, f10, f11

    return values


@njit(cache=True, fastmath={"contract"}, pipeline_class=NoAliasCompiler)
def _edge_steps(
    flat, s_b, s_blk, s_k, shift, sh_a, k0, k1, a0, da, b0, db, kmin, kmax, acc, lo_a, hi_a,
    lo_b, hi_b,
):  # fmt: skip
    """Add the samples on slices [k0, k1) of one group, masked: for slices near box faces.

    Each lane adds only slices in its own [kmin, kmax], and voxels outside the box [lo, hi)
    (the crop) weigh 0. Coordinates are clamped first, so every read stays inside the layout.
    Arrays are (LANES,) lane states from `_load_group` (a0, b0 in padded coordinates, voxel
    index + 1); `flat` is the padded layout from `Volume.axis_major_buffer`, with strides
    s_b of its b rows, s_k of its slices within a block, s_blk of its blocks of 2**shift
    slices and 2**sh_a along a (1, or the block length when slices are inner).
    """
    w_a = np.int32(1 << sh_a)
    w_b = np.int32(s_b)
    zero = np.float32(0.0)
    for k in range(k0, k1):
        kf = np.float32(k)
        base = _slice_offset(k, s_blk, s_k, shift)
        for lane in range(LANES):
            # Padded coordinates (voxel + 1) are >= 0, so truncation is floor.
            pa = min(max(a0[lane] + kf * da[lane], np.float32(lo_a)), np.float32(hi_a + 1))
            pb = min(max(b0[lane] + kf * db[lane], np.float32(lo_b)), np.float32(hi_b + 1))
            ia, ib = np.int32(pa), np.int32(pb)
            fa, fb = pa - np.float32(ia), pb - np.float32(ib)
            in_a0, in_a1 = (ia > lo_a) & (ia <= hi_a), ia < hi_a
            in_b0, in_b1 = (ib > lo_b) & (ib <= hi_b), ib < hi_b
            p = index32(ib, ia, w_b, np.int32(sh_a), base)
            # Voxels outside the box read as 0, and the rest is `_interior_steps`' arithmetic
            # verbatim: a sample inside the box gets the same bits on either path, so an image
            # does not depend on how rays are grouped (which slices of a lane are interior).
            # The clamps keep every read inside the layout: read all four, then mask.
            f00, f01, f10, f11 = _corners(flat, p, w_a, w_b)
            f00 = f00 if in_a0 & in_b0 else zero
            f01 = f01 if in_a1 & in_b0 else zero
            f10 = f10 if in_a0 & in_b1 else zero
            f11 = f11 if in_a1 & in_b1 else zero
            v0 = f00 + fa * (f01 - f00)
            v1 = f10 + fa * (f11 - f10)
            on = (k >= kmin[lane]) & (k <= kmax[lane])
            acc[lane] += (v0 + fb * (v1 - v0)) if on else zero


@njit(cache=True, fastmath={"contract"}, pipeline_class=NoAliasCompiler, inline="always")
def _gather_step(flat, base, w_b, sh_a, kf, a0, da, b0, db, acc):
    """One interior step of a group by gathers: the lane loop, SIMD gathers (4 per sample, 2
    from paired counts: `_corners`) with 32-bit indices (`intrinsics`: no 64-bit widening,
    no negative-index wraparound)."""
    w_a = np.int32(1 << sh_a)
    for lane in range(LANES):
        pa = a0[lane] + kf * da[lane]
        pb = b0[lane] + kf * db[lane]
        ia, ib = np.int32(pa), np.int32(pb)
        fa, fb = pa - np.float32(ia), pb - np.float32(ib)
        p = index32(ib, ia, w_b, np.int32(sh_a), base)
        f00, f01, f10, f11 = _corners(flat, p, w_a, w_b)
        v0 = f00 + fa * (f01 - f00)
        v1 = f10 + fa * (f11 - f10)
        acc[lane] += v0 + fb * (v1 - v0)


@njit(cache=True, fastmath={"contract"}, pipeline_class=NoAliasCompiler)
def _interior_steps(flat, s_b, s_blk, s_k, shift, sh_a, k0, k1, a0, da, b0, db, acc, row_loads):
    """Add the samples on slices [k0, k1) of one group whose every lane is inside the box.

    The hot loop: no masks, no clamps. With `row_loads` a step is `row_step` (vector loads of
    the rows the lanes sample) where it applies, else `_gather_step`; both compute the same
    sums bitwise. Without, a loop of gathers alone, with no `row_step` to test on every
    slice: 1.09-1.10x faster per DRR at 1 thread and 1.18-1.19x at 2 than the same gathers
    behind that test (slices-inner layout, real 256^3 CT, A/B in one process, Xeon model
    207, 2026-12-06). Arguments as in `_edge_steps`: (LANES,) float32
    lane states a0, da, b0, db (padded coordinates) and acc, the flattened layout and its
    strides (row loads need sh_a = 0: a contiguous).
    """
    w_b = np.int32(s_b)
    if not row_loads:
        for k in range(k0, k1):
            base = _slice_offset(k, s_blk, s_k, shift)
            _gather_step(flat, base, w_b, sh_a, np.float32(k), a0, da, b0, db, acc)
        return
    for k in range(k0, k1):
        kf = np.float32(k)
        base = _slice_offset(k, s_blk, s_k, shift)
        if not row_step(flat, base, w_b, kf, a0, da, b0, db, acc):
            _gather_step(flat, base, w_b, sh_a, kf, a0, da, b0, db, acc)


@njit(cache=True)
def _load_group(ids, a0, da, b0, db, kmin, kmax, kin0, kin1, g, la0, lda, lb0, ldb, lkmin, lkmax):
    """Copy the per-ray parameters of the rays `ids` into row g of the lane arrays.

    Empty lanes (id -1) follow the group's first ray with an empty slice range: they never
    count, and they keep the lanes' coordinates within the span that `row_step` loads.
    Returns (first, interior start, interior stop, stop): slices [first, stop) have weight
    for some lane; on [interior start, interior stop) every lane is inside the box.
    """
    first, stop, in0, in1 = NO_SLICE, -1, -1, NO_SLICE
    lead = ids[0]
    for lane in range(LANES):
        if lead < 0:
            lead = ids[lane]
    for lane in range(LANES):
        i = ids[lane]
        if i >= 0:
            # Padded coordinates: voxel index + 1, the layout's zero border being row 0.
            la0[g, lane], lb0[g, lane] = a0[i] + np.float32(1.0), b0[i] + np.float32(1.0)
            lda[g, lane], ldb[g, lane] = da[i], db[i]
            lkmin[g, lane], lkmax[g, lane] = kmin[i], kmax[i]
            first, stop = min(first, kmin[i]), max(stop, kmax[i] + 1)
            in0, in1 = max(in0, kin0[i]), min(in1, kin1[i] + 1)
        else:
            la0[g, lane], lb0[g, lane] = a0[lead] + np.float32(1.0), b0[lead] + np.float32(1.0)
            lda[g, lane], ldb[g, lane] = da[lead], db[lead]
            lkmin[g, lane], lkmax[g, lane] = NO_SLICE, -1
    if in0 >= in1:
        in0 = in1 = stop
    return first, in0, in1, stop


@njit(cache=True)
def _step_tile(flat, strides, ranges, la0, lda, lb0, ldb, lkmin, lkmax, acc, box, row_loads):
    """Add every sample of a tile's groups to `acc`, a block of slices at a time, group by group.

    Args:
        flat: the flattened layout (see `_edge_steps`).
        strides: (s_b, s_blk, s_k, shift, sh_a), its strides, log2 of its block length and
            log2 of its stride along a.
        ranges: (n_g, 4) int64 per group (first, interior start, interior stop, stop).
        la0, lda, lb0, ldb, lkmin, lkmax, acc: (n_g, LANES) lane states from `_load_group`.
        box: (lo_a, hi_a, lo_b, hi_b), the crop along the in-slice axes.
        row_loads: interior steps try `row_step` first.
    """
    lo_a, hi_a, lo_b, hi_b = box
    s_b, s_blk, s_k, shift, sh_a = strides
    first, stop = ranges[:, 0].min(), ranges[:, 3].max()
    chunk = 1 << shift
    for c in range((first >> shift) << shift, stop, chunk):
        for g in range(ranges.shape[0]):
            # Slices in order: masked head, interior, masked tail, each clipped to the chunk.
            for part in range(3):
                k0, k1 = max(c, ranges[g, part]), min(c + chunk, ranges[g, part + 1])
                if k0 >= k1:
                    continue
                if part == 1:
                    _interior_steps(
                        flat, s_b, s_blk, s_k, shift, sh_a, k0, k1, la0[g], lda[g], lb0[g], ldb[g],
                        acc[g], row_loads,
                    )  # fmt: skip
                else:
                    _edge_steps(
                        flat, s_b, s_blk, s_k, shift, sh_a, k0, k1, la0[g], lda[g], lb0[g], ldb[g],
                        lkmin[g], lkmax[g], acc[g], lo_a, hi_a, lo_b, hi_b,
                    )  # fmt: skip


@njit(parallel=True, cache=True)
def joseph_groups(
    flat,
    shape,
    tile_ptr,
    lanes,
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
    row_loads,
    slices_inner,
    scale,
):
    """Line integrals of the grouped rays, all with the same dominant axis.

    A thread owns whole tiles (no cross-thread reductions). It steps the tile's groups
    through the volume a block of slices at a time, group after group, so neighbouring groups
    reuse the cache lines the previous one loaded; each lane sums its samples in slice order.
    Per group, slices where any lane nears a box face go through `_edge_steps`, the rest
    (every lane inside) through `_interior_steps`.

    Args:
        flat: float32 values, or counts (`value_scale`: uint16 on the row layout, uint32
            pairs on the slices-inner one): the zero-padded layout from
            `Volume.axis_major_buffer`, the array of
            `shape` (n_blocks, n_b + 3, block, n_a + 3), or (n_blocks, n_b + 3, n_a + 3,
            block) with `slices_inner`, followed by LAYOUT_SLACK zeros (`block` slices per
            block, a power of 2).
        shape: (4,) int64 the layout's shape.
        tile_ptr, lanes: tiles of groups from `group_rays`.
        a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm: per-ray parameters from `ray_setup`.
        lo_a, hi_a, lo_b, hi_b: the box [lo, hi) along the in-slice axes a and b.
        out: (h * w,) float32, written at the grouped pixel ids.
        row_loads: interior steps use vector row loads where they can (`row_step`), else
            gathers only; the images are bitwise the same.
        slices_inner: the layout's slices are its last axis (gathers only).
        scale: float32 value of one count of `flat` (1 for float32 values): the kernels sum
            counts, and each line integral is scaled once at the end.
    """
    block, shift = (shape[3] if slices_inner else shape[2]), 0
    while (1 << shift) < block:
        shift += 1
    if block != 1 << shift:
        raise ValueError("the layout's block of slices must be a power of 2")
    if flat.size < shape[0] * shape[1] * shape[2] * shape[3] + 2 * LANES:
        raise ValueError("the layout needs its slack: pass Volume.axis_major_buffer")
    s_b = shape[2] * shape[3]
    s_k, sh_a = (1, shift) if slices_inner else (shape[3], 0)
    strides = (s_b, shape[1] * s_b, s_k, shift, sh_a)
    row_loads = row_loads and not slices_inner
    box = (lo_a, hi_a, lo_b, hi_b)
    for t in prange(tile_ptr.size - 1):
        g0, n_g = tile_ptr[t], tile_ptr[t + 1] - tile_ptr[t]
        # (n_g, LANES) lane states, one array each: the step kernels are compiled noalias.
        la0, lda = np.empty((n_g, LANES), np.float32), np.empty((n_g, LANES), np.float32)
        lb0, ldb = np.empty((n_g, LANES), np.float32), np.empty((n_g, LANES), np.float32)
        lkmin, lkmax = np.empty((n_g, LANES), np.int32), np.empty((n_g, LANES), np.int32)
        acc = np.zeros((n_g, LANES), np.float32)
        ranges = np.empty((n_g, 4), np.int64)
        for g in range(n_g):
            # Element by element: a row assigned from a tuple costs 2 s of compilation.
            first, in0, in1, stop = _load_group(
                lanes[g0 + g], a0, da, b0, db, kmin, kmax, kin0, kin1,
                g, la0, lda, lb0, ldb, lkmin, lkmax,
            )  # fmt: skip
            ranges[g, 0], ranges[g, 1], ranges[g, 2], ranges[g, 3] = first, in0, in1, stop
        _step_tile(flat, strides, ranges, la0, lda, lb0, ldb, lkmin, lkmax, acc, box, row_loads)
        for g in range(n_g):
            for lane in range(LANES):
                i = lanes[g0 + g, lane]
                if i >= 0:
                    out[i] = acc[g, lane] * step_mm[i] * scale
