"""The coarse grid of the correspondence pass: air-thresholded, block-averaged attenuation.

A coarse voxel is about one detector patch wide at the isocenter (3/4 of a patch, see
`PATCH_FRACTION`), so that each coarse voxel projects onto roughly one patch of every view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from drrgen.geometry.view import View
from drrgen.volume.volume import Volume

# Coarse voxel width as a fraction of the iso patch width. A coarse voxel's Joseph footprint
# is a tent reaching one coarse voxel to each side, sampled at patch centres, so the fraction
# trades two errors of the acceptance checks (`checks`; `bench_correspondence.py --accuracy`:
# four rotated anisotropic 256^3 limbs x 6 random C-arm view pairs), mean share of bone voxels
# whose patch pair gets C < 0.01 / of entries C >= 0.05 that no tissue voxel projects into:
# 0.6 -> 4.1% / 0.02%; 0.75 -> 1.1% / 0.09%; 0.85 -> 0.3% / 1.2%; 1.0 -> 0.1% / 5.2%.
PATCH_FRACTION = 0.75


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def iso_patch_width_mm(volume: Volume, views: list[View], patch: int) -> float:
    """Width (mm) of one detector patch back-projected to the volume centre, averaged over views.

    For each view: ``patch * pixel_mm * SID / SDD`` with ``pixel_mm`` the mean of ``|u|`` and
    ``|v|``, SID the distance from the source to the volume centre along the detector normal
    and SDD the distance from the source to the detector plane (both mm).
    """
    # Plain floats: numpy's per-call overhead on 3-vectors (np.cross ~20 us) would dominate.
    centre = volume.center.tolist()
    widths = []
    for view in views:
        s, d = view.source.tolist(), view.detector_center.tolist()
        u, v = view.u.tolist(), view.v.tolist()
        n = (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])
        sdd = _dot([d[c] - s[c] for c in range(3)], n)
        sid = _dot([centre[c] - s[c] for c in range(3)], n)
        # The ratio needs no |n|; the same sign means the centre is on the detector side.
        if sid * sdd <= 0:
            raise ValueError(
                f"{volume.source or 'volume'}: the volume centre lies behind a view's source"
            )
        pixel_mm = 0.5 * (math.sqrt(_dot(u, u)) + math.sqrt(_dot(v, v)))
        widths.append(patch * pixel_mm * sid / sdd)
    return sum(widths) / len(widths)


def coarse_factors(
    volume: Volume, views: list[View], patch: int, fraction: float = PATCH_FRACTION
) -> np.ndarray:
    """(3,) int block sizes (f_i, f_j, f_k) along index axes (i, j, k).

    ``f_c = max(1, round(fraction * iso patch width / spacing_c))`` (widths in mm).
    """
    width = fraction * iso_patch_width_mm(volume, views, patch)
    return np.maximum(1, np.rint(width / volume.spacing)).astype(np.int64)


@njit(parallel=True, cache=True)
def _block_mean(data, f_i, f_j, f_k, hu_air, out):
    """Mean of ``max(0, 1 + HU/1000)`` (air below `hu_air` counts 0) over f_k x f_j x f_i blocks.

    data: (nk, nj, ni) HU; out: (nkc, njc, nic) float32, filled in place.
    """
    nk, nj, ni = data.shape
    nkc, njc, nic = out.shape
    # One task per coarse row (kc, jc): each thread owns whole output rows, no reductions
    # across threads, so the result does not depend on the thread count.
    for task in prange(nkc * njc):
        kc = task // njc
        jc = task - kc * njc
        k0, k1 = kc * f_k, min(nk, kc * f_k + f_k)
        j0, j1 = jc * f_j, min(nj, jc * f_j + f_j)
        # Sum the block's fine rows element-wise first: the loop over i is independent per
        # element, so it vectorises without reassociating a float reduction.
        row = np.zeros(ni, dtype=np.float64)
        for k in range(k0, k1):
            for j in range(j0, j1):
                for i in range(ni):
                    hu = data[k, j, i]
                    mu = max(np.float32(0.0), np.float32(1.0) + hu * np.float32(0.001))
                    row[i] += mu if hu >= hu_air else np.float32(0.0)
        rows = (k1 - k0) * (j1 - j0)
        for ic in range(nic):
            i0, i1 = ic * f_i, min(ni, ic * f_i + f_i)
            s = 0.0
            for i in range(i0, i1):
                s += row[i]
            out[kc, jc, ic] = s / (rows * (i1 - i0))


def coarse_volume(volume: Volume, factors, hu_air: float = -300.0) -> Volume:
    """Block-average the water-relative attenuation of an HU volume onto a coarse grid.

    Fine voxels with ``HU < hu_air`` are air (0); the others count ``max(0, 1 + HU/1000)``.
    Partial blocks at the far ends are averaged over the voxels they contain.

    Args:
        volume: HU volume, data (nk, nj, ni).
        factors: (3,) int block size along index axes (i, j, k).
        hu_air: air threshold, HU.

    Returns:
        Volume with data (ceil(nk/f_k), ceil(nj/f_j), ceil(ni/f_i)) float32 (dimensionless)
        whose affine has spacing ``spacing * f`` and voxel (0, 0, 0) at the centre of block
        (0, 0, 0), so each coarse voxel centre is the physical centre of its (full) block.
    """
    f = np.asarray(factors, dtype=np.int64).reshape(3)
    if np.any(f < 1):
        raise ValueError(f"coarse factors must be >= 1, got {f.tolist()}")
    nk, nj, ni = volume.data.shape
    shape = (-(-nk // f[2]), -(-nj // f[1]), -(-ni // f[0]))
    out = np.empty(shape, dtype=np.float32)
    _block_mean(volume.data, int(f[0]), int(f[1]), int(f[2]), np.float32(hu_air), out)
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * f[None, :]
    affine[:3, 3] = volume.index_to_world((f - 1) / 2.0)
    return Volume(out, affine, f"{volume.source} (coarse x{f.tolist()})")


@dataclass(frozen=True)
class CoarseGrid:
    """A coarse volume with its tissue voxels listed, as the footprint kernels want them.

    Attributes:
        volume: the coarse `Volume` (dimensionless block means).
        vox: (n_vox, 3) int64 (i, j, k) indices of the voxels with value > 0, in C (k-j-i) order.
        value: (n_vox,) float64 their values.
        inv_affine: (4, 4) LPS mm -> coarse index.
    """

    volume: Volume
    vox: np.ndarray
    value: np.ndarray
    inv_affine: np.ndarray


def coarse_grid(volume: Volume, factors, hu_air: float = -300.0) -> CoarseGrid:
    """`coarse_volume` plus the list of its non-air voxels (see `CoarseGrid`)."""
    grid = coarse_volume(volume, factors, hu_air)
    kji = np.argwhere(grid.data > 0)
    vox = np.ascontiguousarray(kji[:, ::-1], dtype=np.int64)
    value = grid.data[kji[:, 0], kji[:, 1], kji[:, 2]].astype(np.float64)
    return CoarseGrid(grid, vox, value, np.linalg.inv(grid.affine))
