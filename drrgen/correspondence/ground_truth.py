"""Patch-level many-to-many correspondence ground truth for every pair of views.

Definition (the paper's section 3.1, in the same cone-beam geometry as the DRRs). Two
variants, by name (``definition``); ``paper`` is the default:

1. Coarse grid: fine voxels with HU below `air_threshold_hu` are air (0), the others count their
   density: ``paper``: ``d(HU) = sigmoid(0.005 (HU + 150))`` (air 0.014, fat ~0.56, soft tissue
   ~0.72, bone ~1; the paper's public code); ``peak``: ``max(0, 1 + HU/1000)``. This is
   area-resampled onto cells that tile the volume exactly and are about ``fraction`` x the
   patch width at the volume centre wide (`coarse`); d_v is a cell's mean.
2. Footprint p_i^v of coarse voxel v on view i: for patch a, the mean over
   ``supersample x supersample`` sub-rays from the source to sub-pixel centres spread uniformly
   over patch a (a detector of pitch ``patch / supersample`` pixels, average-pooled to
   patches) of the Joseph weight ``d_v * L * w_a * w_b`` (`footprint`): exactly what
   projecting the one-voxel volume v with `drrgen.projector.project` onto that sub-ray
   detector and average-pooling to patches gives.
3. ``paper``: each voxel's footprint is normalised to peak 1 in each view (p^_i^v), and
   ``C_ij = max_v d_v p^_i^v (p^_j^v)^T``, not divided afterwards: a tissue voxel's own patch
   pair carries its density (soft tissue ~0.7, above the 0.2 positive threshold).
   ``peak``: ``C_ij = max_v p_i^v (p_j^v)^T`` divided by its maximum (density^2 x path length
   weighted; the definition before 2026-12; only bone-to-bone entries reach 0.2).
"""

from __future__ import annotations

import numpy as np

from drrgen.correspondence.accumulate import invert, pair_max
from drrgen.correspondence.coarse import (
    PATCH_FRACTION,
    CoarseGrid,
    coarse_cells,
    coarse_grid,
    iso_patch_width_mm,
)
from drrgen.correspondence.footprint import Footprints, footprints, peak_normalised
from drrgen.geometry.view import View
from drrgen.runtime import numba_threads
from drrgen.volume.volume import Volume

# Sub-rays per patch side. With cells of PATCH_FRACTION = 1/4 patch, 3 x 3 sub-rays put about
# 0.75 cell widths between neighbouring sub-rays: every cell's tent (one cell to each side)
# reaches a sub-ray of the patch it projects into, and reaches across a patch border only a
# little (see `bench_correspondence.py --accuracy` and the README for the measured trade-off).
SUPERSAMPLE = 3

# Ground-truth definitions (see the module doc) and their coarse density function.
DEFINITIONS = {"paper": "sigmoid", "peak": "attenuation"}


def _check_args(
    volume: Volume, views: list[View], patch: int, supersample: int, fraction: float
) -> tuple[int, int]:
    """Validate the views and parameters; return the common detector shape (H, W)."""
    name = volume.source or "volume"
    if patch < 1:
        raise ValueError(f"{name}: patch must be >= 1, got {patch}")
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"{name}: supersample must be an integer >= 1, got {supersample}")
    if not fraction > 0:
        raise ValueError(f"{name}: fraction must be > 0, got {fraction}")
    if len(views) < 2:
        raise ValueError(f"{name}: correspondence needs at least 2 views, got {len(views)}")
    shapes = {tuple(view.shape) for view in views}
    if len(shapes) != 1:
        raise ValueError(f"{name}: all views must share one detector shape, got {sorted(shapes)}")
    h, w = shapes.pop()
    if h % patch or w % patch:
        raise ValueError(f"{name}: detector shape {(h, w)} is not divisible by patch {patch}")
    return h, w


def view_footprints(
    grid: CoarseGrid, views: list[View], patch: int, supersample: int = SUPERSAMPLE
) -> list[Footprints]:
    """Sparse footprints of every non-air voxel of a coarse grid on each view's patches.

    Args:
        grid: coarse grid with its tissue voxels (from `coarse_grid`).
        views: V views sharing one detector shape divisible by `patch`.
        patch: patch size in detector pixels.
        supersample: sub-rays per patch side (see `footprints`).

    Returns:
        V `Footprints`, all numbering the voxels as ``grid.vox`` does.
    """
    return [footprints(grid, view, patch, supersample) for view in views]


def cached_coarse_grid(
    volume: Volume, cells: np.ndarray, air_threshold_hu: float, density: str = "attenuation"
) -> CoarseGrid:
    """`coarse_grid`, memoised on the volume (like its projector layouts).

    Repeated calls on the same `Volume` object (several view sets of one CT or crop) pay the
    full pass over the fine volume once. The dataset builder crops afresh per sample, so there
    each sample pays it (a few ms, see benchmarks/bench_correspondence.py).
    """
    key = ("correspondence.coarse", tuple(int(n) for n in cells), float(air_threshold_hu), density)
    return volume.memo(key, lambda: coarse_grid(volume, cells, air_threshold_hu, density))


def correspondence(
    volume: Volume,
    views: list[View],
    patch: int = 16,
    air_threshold_hu: float = -300.0,
    threads: int | None = None,
    supersample: int = SUPERSAMPLE,
    fraction: float = PATCH_FRACTION,
    definition: str = "paper",
) -> np.ndarray:
    """Many-to-many patch correspondence matrices for all view pairs (see the module doc).

    Args:
        volume: HU volume (data (nk, nj, ni), affine to LPS mm); a crop works as is.
        views: V >= 2 views with one detector shape (H, W), both divisible by `patch`.
        patch: patch size in detector pixels.
        air_threshold_hu: voxels with HU below this are air.
        threads: Numba threads for the kernels (None: Numba's current setting).
        supersample: s >= 1: each patch's footprint is the mean over s x s sub-rays spread
            uniformly over the patch (s = 1: its centre ray only).
        fraction: coarse cell width as a share of the patch width back-projected to the
            volume centre (mean over the views).
        definition: ``paper`` (per-voxel peak-1 footprints times the sigmoid density, not
            divided) or ``peak`` (density-weighted footprints, each pair divided by its
            maximum), see the module doc.

    Returns:
        (P, N, N) float32 in [0, 1] with P = V (V - 1) / 2 pairs in the order
        (0, 1), (0, 2), ..., (V - 2, V - 1) and N = (H / patch) (W / patch) patches numbered
        row-major (``R * (W / patch) + C``); entry [p, a, b] relates patch a of the pair's
        first view to patch b of its second. ``paper``: entry = the largest density of a voxel
        seen by both patches (times how centrally); ``peak``: each pair divided by its maximum
        (all zeros stays zeros). The matrix of (j, i) is exactly the transpose of that of (i, j).
    """
    h, w = _check_args(volume, views, patch, supersample, fraction)
    if definition not in DEFINITIONS:
        raise ValueError(
            f"{volume.source or 'volume'}: unknown correspondence definition {definition!r}; "
            f"choose one of {', '.join(DEFINITIONS)}"
        )
    paper = definition == "paper"
    n_patch = (h // patch) * (w // patch)
    pairs = [(i, j) for i in range(len(views)) for j in range(i + 1, len(views))]
    out = np.empty((len(pairs), n_patch, n_patch), dtype=np.float32)
    with numba_threads(threads):
        cells = coarse_cells(volume, fraction * iso_patch_width_mm(volume, views, patch))
        grid = cached_coarse_grid(volume, cells, air_threshold_hu, DEFINITIONS[definition])
        fps = view_footprints(grid, views, patch, int(supersample))
        if paper:
            fps = [peak_normalised(fp) for fp in fps]
        inverted = [invert(fp, n_patch) for fp in fps[:-1]]
        scale = grid.value if paper else None
        for p, (i, j) in enumerate(pairs):
            pair_max(inverted[i], fps[j], out[p], scale=scale, divide=not paper)
    return out
