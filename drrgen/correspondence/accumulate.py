"""Element-wise maximum of the sparse outer products p_i^v (p_j^v)^T over voxels v."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from drrgen.correspondence.footprint import Footprints


@njit(cache=True)
def _invert(ptr, patch, weight, n_patch, inv_ptr, inv_vox, inv_weight):
    """Counting sort of (voxel, patch, weight) entries by patch (stable: voxels ascending)."""
    inv_ptr[:] = 0
    for e in range(patch.shape[0]):
        inv_ptr[patch[e] + 1] += 1
    for a in range(n_patch):
        inv_ptr[a + 1] += inv_ptr[a]
    fill = inv_ptr[:-1].copy()
    for n in range(ptr.shape[0] - 1):
        for e in range(ptr[n], ptr[n + 1]):
            a = patch[e]
            inv_vox[fill[a]] = n
            inv_weight[fill[a]] = weight[e]
            fill[a] += 1


def invert(fp: Footprints, n_patch: int) -> Footprints:
    """The same entries indexed by patch: ``ptr`` over patches, ``patch`` holds voxel ids.

    Args:
        fp: per-voxel footprints of one view.
        n_patch: N, the number of patches of that view.

    Returns:
        `Footprints` whose ``ptr`` has N + 1 entries and whose ``patch`` field holds voxel ids.
    """
    inv_ptr = np.empty(n_patch + 1, dtype=np.int64)
    inv_vox = np.empty(len(fp.patch), dtype=np.int32)
    inv_weight = np.empty(len(fp.patch), dtype=np.float64)
    _invert(fp.ptr, fp.patch, fp.weight, n_patch, inv_ptr, inv_vox, inv_weight)
    return Footprints(inv_ptr, inv_vox, inv_weight)


@njit(parallel=True, cache=True)
def _pair_max(inv_ptr, inv_vox, inv_weight, ptr, patch, weight, out, row_max):
    """out[a, b] = max over voxels of w_i(v, a) w_j(v, b); row_max[a] = max_b out[a, b].

    One prange task per row a: each thread owns whole rows of `out`, and max is exact in any
    order, so the result is identical for every thread count.
    """
    for a in prange(out.shape[0]):
        row = out[a]
        row[:] = 0.0
        for e in range(inv_ptr[a], inv_ptr[a + 1]):
            n = inv_vox[e]
            wa = inv_weight[e]
            for f in range(ptr[n], ptr[n + 1]):
                # max of float32-rounded products == float32 rounding of the max (monotone).
                p = np.float32(wa * weight[f])
                b = patch[f]
                if p > row[b]:
                    row[b] = p
        m = np.float32(0.0)
        for b in range(row.shape[0]):
            m = max(m, row[b])
        row_max[a] = m


def pair_max(inv_first: Footprints, second: Footprints, out: np.ndarray) -> None:
    """Normalised correspondence of one view pair, written into `out`.

    Args:
        inv_first: the first view's footprints indexed by patch (from `invert`).
        second: the second view's footprints indexed by voxel (same voxel numbering).
        out: (N, N) float32, filled with ``max_v p_i^v (p_j^v)^T / max`` (all zeros if empty).
    """
    row_max = np.empty(out.shape[0], dtype=np.float32)
    _pair_max(
        inv_first.ptr,
        inv_first.patch,
        inv_first.weight,
        second.ptr,
        second.patch,
        second.weight,
        out,
        row_max,
    )
    peak = row_max.max(initial=np.float32(0.0))
    if peak > 0:
        out /= peak
