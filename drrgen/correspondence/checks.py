"""Geometric checks of a correspondence matrix against the fine CT (the issue's acceptance).

1. Dense bone voxels projected with the pinhole geometry must find C >= 0.01 at exactly the
   patch pair they land in (`bone_miss_fraction`).
2. Entries with C >= 0.05 must be seen by some tissue voxel centre landing in exactly both
   patches (`unsupported_fraction`).
"""

from __future__ import annotations

import numpy as np

from drrgen.geometry.view import View
from drrgen.volume.volume import Volume


def patch_index(view: View, xyz: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major patch index of (n, 3) LPS mm points, and whether they hit the detector.

    Pixel (r, c) covers row in [r - 0.5, r + 0.5) and col in [c - 0.5, c + 0.5) (see
    `View.project_points`); patch (R, C) covers pixels [R patch, (R + 1) patch) x likewise.

    Returns:
        (n,) int64 index ``R * (W / patch) + C`` (arbitrary where off the detector), (n,) bool.
    """
    rc = view.project_points(xyz)
    h, w = view.shape
    ok = np.all(np.isfinite(rc), axis=1)
    ok &= (rc[:, 0] >= -0.5) & (rc[:, 0] < h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] < w - 0.5)
    pix = np.floor(np.where(ok[:, None], rc, 0.0) + 0.5).astype(np.int64)
    return (pix[:, 0] // patch) * (w // patch) + pix[:, 1] // patch, ok


def bone_points(
    volume: Volume, hu_bone: float = 700.0, n_points: int = 4000, seed: int = 0
) -> np.ndarray:
    """(n, 3) LPS mm centres of up to `n_points` voxels with HU > hu_bone, sampled (seeded)."""
    kji = np.argwhere(volume.data > hu_bone)
    if len(kji) == 0:
        raise ValueError(f"{volume.source or 'volume'}: no voxel above {hu_bone} HU")
    rng = np.random.default_rng(seed)
    kji = kji[rng.choice(len(kji), min(n_points, len(kji)), replace=False)]
    return volume.index_to_world(kji[:, ::-1].astype(np.float64))


def tissue_points(volume: Volume, air_threshold_hu: float = -300.0) -> np.ndarray:
    """(n, 3) LPS mm centres of every voxel with HU >= air_threshold_hu."""
    kji = np.argwhere(volume.data >= air_threshold_hu)
    return volume.index_to_world(kji[:, ::-1].astype(np.float64))


def miss_share(hit_a, hit_b, c: np.ndarray, threshold: float = 0.01) -> float:
    """Share of points whose patch pair has C < threshold.

    Args:
        hit_a, hit_b: `patch_index` results of the same points in the pair's two views.
        c: the pair's (N, N) matrix (rows: the first view's patches).
    """
    (pa, ok_a), (pb, ok_b) = hit_a, hit_b
    ok = ok_a & ok_b
    return float(np.mean(c[pa[ok], pb[ok]] < threshold)) if ok.any() else 0.0


def seen_pairs(hit_a, hit_b, n_patch: int) -> np.ndarray:
    """(N, N) bool: patch pairs that some point lands in (`patch_index` results per view)."""
    (pa, ok_a), (pb, ok_b) = hit_a, hit_b
    seen = np.zeros((n_patch, n_patch), dtype=bool)
    seen[pa[ok_a & ok_b], pb[ok_a & ok_b]] = True
    return seen


def unsupported_share(seen: np.ndarray, c: np.ndarray, threshold: float = 0.05) -> float:
    """Share of entries C >= threshold outside `seen` (from `seen_pairs`); 0 if none."""
    strong = c >= threshold
    return float(np.mean(~seen[strong])) if strong.any() else 0.0


def bone_miss_fraction(
    volume: Volume,
    view_a: View,
    view_b: View,
    c: np.ndarray,
    patch: int = 16,
    hu_bone: float = 700.0,
    threshold: float = 0.01,
    n_points: int = 4000,
    seed: int = 0,
) -> float:
    """Share of sampled bone voxel centres (HU > hu_bone) whose patch pair has C < threshold.

    Args:
        volume: the fine HU volume the matrix was computed from.
        view_a, view_b: the pair's views; c: its (N, N) matrix (rows: view_a's patches).
        n_points: bone voxels sampled (seeded); those off either detector are skipped.
    """
    xyz = bone_points(volume, hu_bone, n_points, seed)
    return miss_share(
        patch_index(view_a, xyz, patch), patch_index(view_b, xyz, patch), c, threshold
    )


def unsupported_fraction(
    volume: Volume,
    view_a: View,
    view_b: View,
    c: np.ndarray,
    patch: int = 16,
    air_threshold_hu: float = -300.0,
    threshold: float = 0.05,
) -> float:
    """Share of entries C >= threshold without a tissue voxel centre (HU >= air_threshold_hu)
    in both patches.

    Args:
        volume: the fine HU volume the matrix was computed from.
        view_a, view_b: the pair's views; c: its (N, N) matrix (rows: view_a's patches).
    """
    xyz = tissue_points(volume, air_threshold_hu)
    seen = seen_pairs(patch_index(view_a, xyz, patch), patch_index(view_b, xyz, patch), len(c))
    return unsupported_share(seen, c, threshold)
