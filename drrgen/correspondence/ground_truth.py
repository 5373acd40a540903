"""Patch-level many-to-many correspondence ground truth for every pair of views.

C_ij = max over non-air coarse voxels v of p_i^v (p_j^v)^T, normalised to [0, 1], where p_i^v
is the Joseph projection of the one-voxel volume v onto view i's patch detector (the paper's
section 3.1, in the same cone-beam geometry as the DRRs).
"""

from __future__ import annotations

import numpy as np

from drrgen.correspondence.accumulate import invert, pair_max
from drrgen.correspondence.coarse import CoarseGrid, coarse_factors, coarse_grid
from drrgen.correspondence.footprint import Footprints, footprints
from drrgen.geometry.view import View
from drrgen.runtime import numba_threads
from drrgen.volume.volume import Volume


def _check_views(volume: Volume, views: list[View], patch: int) -> tuple[int, int]:
    """Validate the views; return the common detector shape (H, W)."""
    name = volume.source or "volume"
    if patch < 1:
        raise ValueError(f"{name}: patch must be >= 1, got {patch}")
    if len(views) < 2:
        raise ValueError(f"{name}: correspondence needs at least 2 views, got {len(views)}")
    shapes = {tuple(view.shape) for view in views}
    if len(shapes) != 1:
        raise ValueError(f"{name}: all views must share one detector shape, got {sorted(shapes)}")
    h, w = shapes.pop()
    if h % patch or w % patch:
        raise ValueError(f"{name}: detector shape {(h, w)} is not divisible by patch {patch}")
    return h, w


def view_footprints(grid: CoarseGrid, views: list[View], patch: int) -> list[Footprints]:
    """Sparse footprints of every non-air voxel of a coarse grid on each view's patch detector.

    Args:
        grid: coarse grid with its tissue voxels (from `coarse_grid`).
        views: V views sharing one detector shape divisible by `patch`.
        patch: patch size in detector pixels.

    Returns:
        V `Footprints`, all numbering the voxels as ``grid.vox`` does.
    """
    return [footprints(grid, view, patch) for view in views]


def cached_coarse_grid(volume: Volume, factors: np.ndarray, hu_air: float) -> CoarseGrid:
    """`coarse_grid`, memoised on the volume (like its projector layouts).

    A dataset builder may draw several view sets per CT; views of similar geometry share the
    block factors, so the one full pass over the fine volume is paid once per CT.
    """
    key = ("correspondence.coarse", tuple(int(f) for f in factors), float(hu_air))
    if key not in volume._cache:
        volume._cache[key] = coarse_grid(volume, factors, hu_air)
    return volume._cache[key]


def correspondence(
    volume: Volume,
    views: list[View],
    patch: int = 16,
    hu_air: float = -300.0,
    threads: int | None = None,
) -> np.ndarray:
    """Many-to-many patch correspondence matrices for all view pairs.

    Args:
        volume: HU volume (data (nk, nj, ni), affine to LPS mm); a crop works as is.
        views: V >= 2 views with one detector shape (H, W), both divisible by `patch`.
        patch: patch size in detector pixels.
        hu_air: voxels with HU below this are air.
        threads: Numba threads for the kernels (None: Numba's current setting).

    Returns:
        (P, N, N) float32 in [0, 1] with P = V (V - 1) / 2 pairs in the order
        (0, 1), (0, 2), ..., (V - 2, V - 1) and N = (H / patch) (W / patch) patches numbered
        row-major (``R * (W / patch) + C``); entry [p, a, b] relates patch a of the pair's
        first view to patch b of its second. Each pair is divided by its maximum (all zeros
        stays zeros), and the matrix of (j, i) is exactly the transpose of that of (i, j).
    """
    h, w = _check_views(volume, views, patch)
    n_patch = (h // patch) * (w // patch)
    pairs = [(i, j) for i in range(len(views)) for j in range(i + 1, len(views))]
    out = np.empty((len(pairs), n_patch, n_patch), dtype=np.float32)
    with numba_threads(threads):
        grid = cached_coarse_grid(volume, coarse_factors(volume, views, patch), hu_air)
        fps = view_footprints(grid, views, patch)
        inverted = [invert(fp, n_patch) for fp in fps[:-1]]
        for p, (i, j) in enumerate(pairs):
            pair_max(inverted[i], fps[j], out[p])
    return out
