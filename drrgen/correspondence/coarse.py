"""The coarse grid of the correspondence pass: air-thresholded, area-resampled attenuation.

Fine voxels with HU below the air threshold count 0, the others ``max(0, 1 + HU/1000)``
(attenuation relative to water). The coarse grid has the fine grid's axes and outer faces and
N_c = max(1, round(extent_c / width)) equal cells per axis, so cells are about `width` mm wide
on every axis whatever the spacing; each holds the overlap-weighted (area) mean of the fine
voxels it covers. The correspondence uses ``width = PATCH_FRACTION x`` the patch width at the
volume centre: a coarse voxel is a quarter of a patch, so the tent of its Joseph footprint
(one coarse voxel to each side) stays within about a patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from drrgen.geometry.view import View
from drrgen.volume.volume import Volume

# Coarse voxel width as a fraction of the iso patch width, chosen with the supersampling
# (`ground_truth.SUPERSAMPLE`): the tent must reach a sub-ray from every point of a voxel
# (coverage: a bone point's patch pair is never empty) but not far across a patch border
# (support: strong entries need tissue in both patches). Mean / max over view pairs of the
# share of bone points whose patch pair gets C < 0.01 and of entries C >= 0.05 that no tissue
# voxel projects into (`bench_correspondence.py --accuracy`, four rotated anisotropic 256^3
# limbs x 6 random C-arm view pairs): 0.25 with 3 x 3 sub-rays -> 0.007 / 0.04 % and
# 0 / 0 %; the centre ray of 3/4-patch voxels -> 0.9 / 2.7 % and 0.08 / 0.6 %.
PATCH_FRACTION = 0.25


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def iso_patch_width_mm(volume: Volume, views: list[View], patch: int) -> float:
    """Width (mm) of one detector patch back-projected to the volume centre, averaged over views
    (see `iso_patch_widths_mm`)."""
    widths = iso_patch_widths_mm(volume, views, patch)
    return sum(widths) / len(widths)


def iso_patch_widths_mm(volume: Volume, views: list[View], patch: int) -> list[float]:
    """Width (mm) of one detector patch back-projected to the volume centre, per view.

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
    return widths


def coarse_cells(volume: Volume, width_mm: float) -> np.ndarray:
    """(3,) int cells (N_i, N_j, N_k) of the coarse grid: ``max(1, round(extent / width_mm))``.

    The extent of axis c is ``n_c * spacing_c`` (mm), so the cells tile the volume exactly and
    are ``extent / N_c``, about `width_mm`, wide along each axis (any spacing, any shape).
    """
    if not (np.isfinite(width_mm) and width_mm > 0):
        raise ValueError(
            f"{volume.source or 'volume'}: coarse cell width {width_mm} mm (degenerate views: "
            "is the volume larger than the source distance?)"
        )
    extent = np.asarray(volume.shape_ijk, dtype=np.float64) * volume.spacing
    return np.maximum(1, np.rint(extent / float(width_mm))).astype(np.int64)


@njit(cache=True)
def _axis_overlaps(n, cells):
    """Area weights of one axis: n fine voxels onto `cells` equal cells covering them exactly.

    In index units fine voxel x covers [x - 1/2, x + 1/2] and cell c covers
    [c r - 1/2, (c + 1) r - 1/2] with r = n / cells; the weight of x in c is their overlap / r,
    so each cell's weights sum to 1. Returns CSR arrays by cell (ptr (cells + 1,), fine index,
    weight) and by fine voxel (ptr (n + 1,), cell index, weight).
    """
    r = n / cells
    cap = n + cells
    c_ptr, c_idx, c_w = np.zeros(cells + 1, np.int64), np.empty(cap, np.int64), np.empty(cap)
    count = np.zeros(n, np.int64)
    e = 0
    for c in range(cells):
        lo = c * r - 0.5
        hi = (c + 1) * r - 0.5 if c < cells - 1 else n - 0.5
        for x in range(max(0, int(np.floor(lo + 0.5))), min(n - 1, int(np.ceil(hi + 0.5))) + 1):
            overlap = min(x + 0.5, hi) - max(x - 0.5, lo)
            if overlap > 0.0:
                c_idx[e], c_w[e] = x, overlap / r
                count[x] += 1
                e += 1
        c_ptr[c + 1] = e
    x_ptr = np.zeros(n + 1, np.int64)
    for x in range(n):
        x_ptr[x + 1] = x_ptr[x] + count[x]
    x_cell, x_w = np.empty(e, np.int64), np.empty(e)
    fill = x_ptr[:-1].copy()
    for c in range(cells):  # cells ascending, so each voxel's cells ascend
        for f in range(c_ptr[c], c_ptr[c + 1]):
            x = c_idx[f]
            x_cell[fill[x]], x_w[fill[x]] = c, c_w[f]
            fill[x] += 1
    return c_ptr, c_idx[:e], c_w[:e], x_ptr, x_cell, x_w


@njit(cache=True)
def _reduce_rows(acc, ptr, idx, weight, out):
    """out[r, c] = sum of weight[f] * acc[r, idx[f]] over f in ptr[c]:ptr[c + 1] (float64 sums).

    Two rows at a time: the short sums are latency-bound, two independent chains share the
    index and weight loads.
    """
    n_rows = acc.shape[0]
    for r in range(0, n_rows - 1, 2):
        a, b = acc[r], acc[r + 1]
        for c in range(out.shape[1]):
            sa, sb = 0.0, 0.0
            for f in range(ptr[c], ptr[c + 1]):
                sa += weight[f] * a[idx[f]]
                sb += weight[f] * b[idx[f]]
            out[r, c], out[r + 1, c] = sa, sb
    if n_rows % 2:
        a = acc[n_rows - 1]
        for c in range(out.shape[1]):
            sa = 0.0
            for f in range(ptr[c], ptr[c + 1]):
                sa += weight[f] * a[idx[f]]
            out[n_rows - 1, c] = sa


# Density functions of a fine voxel (HU -> dimensionless), by name: "attenuation" is the
# attenuation relative to water; "sigmoid" is the paper's soft density in [0, 1]
# (sigmoid(0.005 (HU + 150)): air 0.014, fat ~0.56, soft tissue ~0.72, bone ~1).
DENSITIES = ("attenuation", "sigmoid")
SIGMOID_SLOPE_PER_HU = 0.005
SIGMOID_CENTRE_HU = -150.0


def sigmoid_density(hu):
    """The paper's soft density ``sigmoid(0.005 (HU + 150))``, float32, element-wise."""
    x = np.array(hu, dtype=np.float32)  # a copy (0-d for a scalar), computed in place
    x -= np.float32(SIGMOID_CENTRE_HU)
    x *= np.float32(-SIGMOID_SLOPE_PER_HU)
    np.exp(x, out=x)
    x += np.float32(1.0)
    return np.reciprocal(x, out=x)


def density_volume(volume: Volume, air_threshold_hu: float) -> np.ndarray:
    """(nk, nj, ni) float32 sigmoid density of `volume` (air below `air_threshold_hu` is 0),
    memoised on the root volume that `volume` was cropped from, returned for `volume`'s own box.

    An exp per fine voxel costs 5x the whole coarse pass; per CT it is paid once and every
    crop of it reads the table.
    """
    root, (i0, j0, k0) = volume.root

    def compute():
        dens = sigmoid_density(root.data)
        dens[root.data < np.float32(air_threshold_hu)] = 0.0
        return dens

    dens = root.memo(("correspondence.density", float(air_threshold_hu)), compute)
    nk, nj, ni = volume.data.shape
    return dens[k0 : k0 + nk, j0 : j0 + nj, i0 : i0 + ni]


@njit(parallel=True, cache=True)
def _area_mean(base, k0, j0, i0, k_map, j_map, i_map, air_threshold_hu, as_is, out, nj, ni):
    """Area mean of ``max(0, 1 + HU/1000)`` (air below `air_threshold_hu` counts 0) onto
    `out` cells; with ``as_is``, `base` already holds densities (air 0), averaged as they are.

    The volume is the box ``base[k0:, j0:j0 + nj, i0:i0 + ni]`` of a C-contiguous array: a crop
    is read in place, and rows typed contiguous let the inner loops vectorise (Numba cannot
    vectorise a strided 'A'-layout view). out: (nkc, njc, nic) float32. k_map and i_map are
    `_axis_overlaps` by cell, j_map by fine voxel.
    """
    k_ptr, k_idx, k_w = k_map
    j_ptr, j_cell, j_w = j_map
    i_ptr, i_idx, i_w = i_map
    njc = out.shape[1]
    # One task per coarse slab kc: each thread owns whole output slabs and sums in a fixed
    # order, so the result does not depend on the thread count. Fine rows are read once per
    # slab they overlap (twice only where a slab boundary cuts a fine slice).
    for kc in prange(out.shape[0]):
        # float32 rows: twice the SIMD width; each element sums a few hundred weighted terms
        # at most (relative error ~1e-6); the last reduction over i is float64.
        acc = np.zeros((njc, ni), np.float32)
        line = np.empty(ni, np.float32)
        for j in range(nj):
            # The slab's fine rows at this j summed first (k inner): one small L1-resident
            # row, then spread onto the one or two coarse rows jc it overlaps.
            for i in range(ni):  # element loop: slice assignments compile slowly (README)
                line[i] = 0.0
            for e in range(k_ptr[kc], k_ptr[kc + 1]):
                src = base[k0 + k_idx[e], j0 + j, i0 : i0 + ni]
                wk = np.float32(k_w[e])
                if as_is:  # the branch outside the loop: each loop vectorises on its own
                    for i in range(ni):
                        line[i] += wk * src[i]
                else:
                    for i in range(ni):
                        hu = src[i]
                        m = max(np.float32(0.0), np.float32(1.0) + hu * np.float32(0.001))
                        line[i] += wk * (m if hu >= air_threshold_hu else np.float32(0.0))
            for f in range(j_ptr[j], j_ptr[j + 1]):
                row = acc[j_cell[f]]
                wj = np.float32(j_w[f])
                for i in range(ni):
                    row[i] += wj * line[i]
        _reduce_rows(acc, i_ptr, i_idx, i_w, out[kc])


def _contiguous_box(data: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """(C-contiguous 3-D array, k0, j0, i0) of which `data` is the box starting there.

    A crop (`Volume.crop`) is a basic slice of its parent: the parent is returned, no copy.
    Any other layout is copied once.
    """
    if data.flags.c_contiguous:
        return data, 0, 0, 0
    base = data.base
    if (
        isinstance(base, np.ndarray)
        and base.ndim == 3
        and base.dtype == data.dtype
        and base.flags.c_contiguous
        and base.strides == data.strides
    ):
        offset = data.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        k0, rest = divmod(offset, base.strides[0])
        j0, rest = divmod(rest, base.strides[1])
        i0 = rest // base.strides[2]
        if k0 + data.shape[0] <= base.shape[0] and j0 + data.shape[1] <= base.shape[1]:
            if i0 + data.shape[2] <= base.shape[2]:
                return base, int(k0), int(j0), int(i0)
    return np.ascontiguousarray(data), 0, 0, 0


def coarse_volume(
    volume: Volume, cells, air_threshold_hu: float = -300.0, density: str = "attenuation"
) -> Volume:
    """Area-resample the density of an HU volume onto a coarse grid.

    Fine voxels with ``HU < air_threshold_hu`` are air (0); the others count ``max(0, 1 + HU/1000)``
    (``density="attenuation"``) or ``sigmoid(0.005 (HU + 150))`` (``"sigmoid"``, in (0, 1)).
    The coarse grid has ``cells`` (N_i, N_j, N_k) equal cells tiling the volume's extent
    exactly (r_c = n_c / N_c fine voxels per cell, not necessarily an integer, possibly < 1);
    each cell holds the overlap-weighted mean of the fine voxels it covers (no partial cells).

    Args:
        volume: HU volume, data (nk, nj, ni) (a strided crop works as is).
        cells: (3,) int cells along index axes (i, j, k), each >= 1.
        air_threshold_hu: air threshold, HU.
        density: the fine voxel's density function, one of `DENSITIES`.

    Returns:
        Volume with data (N_k, N_j, N_i) float32 (dimensionless) whose affine has spacing
        ``spacing * r`` and voxel (0, 0, 0) at the centre of cell (0, 0, 0) (fine index
        ``(r - 1) / 2``), so each coarse voxel centre is the physical centre of its cell.
    """
    n_cells = np.asarray(cells, dtype=np.int64).reshape(3)
    if density not in DENSITIES:
        raise ValueError(f"unknown density {density!r}; choose one of {', '.join(DENSITIES)}")
    if np.any(n_cells < 1):
        raise ValueError(f"coarse cells must be >= 1, got {n_cells.tolist()}")
    n = np.asarray(volume.shape_ijk, dtype=np.int64)
    k_map = _axis_overlaps(int(n[2]), int(n_cells[2]))
    j_map = _axis_overlaps(int(n[1]), int(n_cells[1]))
    i_map = _axis_overlaps(int(n[0]), int(n_cells[0]))
    out = np.empty(tuple(n_cells[::-1]), dtype=np.float32)
    values = volume.data if density == "attenuation" else density_volume(volume, air_threshold_hu)
    base, k0, j0, i0 = _contiguous_box(values)
    _area_mean(
        base, k0, j0, i0, k_map[:3], j_map[3:], i_map[:3],
        np.float32(air_threshold_hu), density != "attenuation", out,
        int(n[1]), int(n[0]),
    )  # fmt: skip
    r = n / n_cells
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * r[None, :]
    affine[:3, 3] = volume.index_to_world((r - 1) / 2.0)
    return Volume(out, affine, f"{volume.source} (coarse {n_cells.tolist()})")


@dataclass(frozen=True)
class CoarseGrid:
    """A coarse volume with its tissue voxels listed, as the footprint kernels want them.

    Attributes:
        volume: the coarse `Volume` (dimensionless area means).
        vox: (n_vox, 3) int64 (i, j, k) indices of the voxels with value > 0, in C (k-j-i) order.
        value: (n_vox,) float64 their values.
        inv_affine: (4, 4) LPS mm -> coarse index.
    """

    volume: Volume
    vox: np.ndarray
    value: np.ndarray
    inv_affine: np.ndarray


@njit(cache=True)
def _tissue(data):
    """(n, 3) int64 (i, j, k) indices and (n,) float64 values of the cells > 0, in C order."""
    nk, nj, ni = data.shape
    n = 0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                n += data[k, j, i] > 0
    vox, value = np.empty((n, 3), np.int64), np.empty(n)
    n = 0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if data[k, j, i] > 0:
                    vox[n, 0], vox[n, 1], vox[n, 2] = i, j, k
                    value[n] = data[k, j, i]
                    n += 1
    return vox, value


def coarse_grid(
    volume: Volume, cells, air_threshold_hu: float = -300.0, density: str = "attenuation"
) -> CoarseGrid:
    """`coarse_volume` plus the list of its non-air voxels (see `CoarseGrid`)."""
    grid = coarse_volume(volume, cells, air_threshold_hu, density)
    vox, value = _tissue(grid.data)
    return CoarseGrid(grid, vox, value, np.linalg.inv(grid.affine))
