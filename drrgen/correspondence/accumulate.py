"""Element-wise maximum of the sparse outer products p_i^v (p_j^v)^T over voxels v."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from drrgen.correspondence.footprint import Footprints


@njit(cache=True)
def _invert(start, count, patch, weight, n_patch, inv_start, inv_vox, inv_weight):
    """Counting sort of (voxel, patch, weight) entries by patch (stable: voxels ascending)."""
    for a in range(inv_start.size):  # element loop: slice assignments compile slowly (README)
        inv_start[a] = 0
    for n in range(start.shape[0]):
        for e in range(start[n], start[n] + count[n]):
            inv_start[patch[e] + 1] += 1
    for a in range(n_patch):
        inv_start[a + 1] += inv_start[a]
    fill = inv_start[:-1].copy()
    for n in range(start.shape[0]):
        for e in range(start[n], start[n] + count[n]):
            a = patch[e]
            inv_vox[fill[a]] = n
            inv_weight[fill[a]] = weight[e]
            fill[a] += 1


def invert(fp: Footprints, n_patch: int) -> Footprints:
    """The same entries indexed by patch: entry runs per patch, holding voxel ids.

    Args:
        fp: per-voxel footprints of one view.
        n_patch: N, the number of patches of that view.

    Returns:
        `Footprints` over patches (N runs): ``patch`` holds voxel ids, ascending per patch.
    """
    nnz = int(fp.count.sum())
    inv_start = np.empty(n_patch + 1, dtype=np.int64)
    inv_vox = np.empty(nnz, dtype=np.int32)
    inv_weight = np.empty(nnz, dtype=np.float64)
    _invert(fp.start, fp.count, fp.patch, fp.weight, n_patch, inv_start, inv_vox, inv_weight)
    return Footprints(inv_start[:-1], np.diff(inv_start), inv_vox, inv_weight)


@njit(parallel=True, cache=True)
def _pair_max(
    inv_start, inv_count, inv_vox, inv_weight, start, count, patch, weight, scale, divide, out
):
    """out[a, b] = max over voxels of scale_v (w_i(v, a) w_j(v, b)), then divided by its
    maximum if `divide`.

    One prange task per row a: each thread owns whole rows of `out`, and max is exact in any
    order, so the result is identical for every thread count. The two weights are multiplied
    first (commutative in IEEE arithmetic), so the pair (j, i) gets exactly the transpose.
    """
    n_rows = out.shape[0]
    row_max = np.zeros(n_rows, np.float32)
    for a in prange(n_rows):
        row = out[a]
        for b in range(row.size):  # element loop: slice assignments compile slowly (README)
            row[b] = 0.0
        m = np.float32(0.0)
        for e in range(inv_start[a], inv_start[a] + inv_count[a]):
            n = inv_vox[e]
            wa = inv_weight[e]
            for f in range(start[n], start[n] + count[n]):
                # max of float32-rounded products == float32 rounding of the max (monotone).
                p = np.float32(scale[n] * (wa * weight[f]))
                b = patch[f]
                if p > row[b]:
                    row[b] = p
                m = max(m, p)  # the row's maximum is the largest product written to it
        row_max[a] = m
    peak = np.float32(0.0)
    for a in range(n_rows):
        peak = max(peak, row_max[a])
    if divide and peak > 0:
        for a in prange(n_rows):
            for b in range(out.shape[1]):
                out[a, b] /= peak


def pair_max(
    inv_first: Footprints,
    second: Footprints,
    out: np.ndarray,
    scale: np.ndarray | None = None,
    divide: bool = True,
) -> None:
    """Correspondence of one view pair, written into `out`.

    Args:
        inv_first: the first view's footprints indexed by patch (from `invert`).
        second: the second view's footprints indexed by voxel (same voxel numbering).
        out: (N, N) float32, filled with ``max_v scale_v p_i^v (p_j^v)^T``, divided by its
            maximum if `divide` (all zeros if empty).
        scale: (n_vox,) float64 per-voxel factor (None: 1), e.g. the voxel's density.
        divide: divide the pair by its own maximum (the "peak" definition).
    """
    if scale is None:
        scale = np.ones(second.start.shape[0])
    _pair_max(
        inv_first.start, inv_first.count, inv_first.patch, inv_first.weight,
        second.start, second.count, second.patch, second.weight,
        np.ascontiguousarray(scale, dtype=np.float64), bool(divide), out,
    )  # fmt: skip
