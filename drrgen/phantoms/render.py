"""Rasterise a `Limb` into an HU grid, with partial-volume edges (no staircase in the DRRs)."""

from __future__ import annotations

import numpy as np

from drrgen.phantoms.anatomy import Bone, Limb
from drrgen.phantoms.rods import end_weight, rod_box, rod_sdf, smooth_min
from drrgen.volume.volume import HU_AIR

_FAR = np.float32(1e6)
_BONE_BLEND_MM = 6.0  # fillet where the rods of one bone meet


def _coverage(sdf: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Fraction of a voxel inside the surface sdf = 0 (linear ramp over one voxel)."""
    return np.clip(np.float32(0.5) - sdf / np.float32(voxel_mm), np.float32(0), np.float32(1))


def _paint(hu: np.ndarray, coverage: np.ndarray, value) -> None:
    """Composite `value` over `hu` in place, weighted by `coverage` (inner layers last)."""
    hu += coverage * (np.float32(value) - hu)


def _envelope_sdf(limb: Limb, grid_mm, shape_kji) -> np.ndarray:
    """Signed distance (mm) to the skin: smooth union of the envelope rods, far away = 1e6."""
    sdf = np.full(shape_kji, _FAR, dtype=np.float32)
    x, y, z = grid_mm
    for rod, blend_mm in limb.envelope:
        box = rod_box(rod, grid_mm, margin_mm=blend_mm + 2)
        d, _ = rod_sdf(rod, x[None, None, box[2]], y[None, box[1], None], z[box[0], None, None])
        sdf[box] = smooth_min(sdf[box], d, blend_mm)
    return sdf


def _paint_bone(hu: np.ndarray, bone: Bone, grid_mm, voxel_mm: float) -> None:
    """Cortical shell, then marrow (cancellous near the ends) inside it, in place."""
    x, y, z = grid_mm
    boxes = [rod_box(r, grid_mm, margin_mm=2 * voxel_mm) for r in bone.rods]
    box = tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )
    xs, ys, zs = x[None, None, box[2]], y[None, box[1], None], z[box[0], None, None]
    sdf, s = rod_sdf(bone.rods[0], xs, ys, zs)
    for rod in bone.rods[1:]:
        d, t = rod_sdf(rod, xs, ys, zs)
        s = np.where(d < sdf, t, s)
        sdf = smooth_min(sdf, d, _BONE_BLEND_MM)
    ends = np.minimum(end_weight(s), np.float32(1))
    cortex = np.float32(bone.cortex_mm) * (np.float32(1) - np.float32(0.4) * ends)
    marrow = np.float32(bone.marrow_hu) + np.float32(bone.cancellous_hu - bone.marrow_hu) * ends
    block = hu[box]
    _paint(block, _coverage(sdf, voxel_mm), bone.cortical_hu)
    _paint(block, _coverage(sdf + cortex, voxel_mm), marrow)


def render_limb(limb: Limb, grid_mm: list[np.ndarray], voxel_mm: float) -> np.ndarray:
    """HU values of the limb on a grid: air, skin, fat, soft tissue, bones.

    Args:
        limb: the layout, in the coordinates of `grid_mm`.
        grid_mm: [x (ni,), y (nj,), z (nk,)] increasing float32 coordinates of the voxel
            centres, mm.
        voxel_mm: voxel size for the partial-volume ramp, mm.

    Returns:
        (nk, nj, ni) float32 HU.
    """
    shape = (len(grid_mm[2]), len(grid_mm[1]), len(grid_mm[0]))
    skin = _envelope_sdf(limb, grid_mm, shape)
    hu = np.full(shape, HU_AIR, dtype=np.float32)
    _paint(hu, _coverage(skin, voxel_mm), limb.skin_hu)
    _paint(hu, _coverage(skin + np.float32(limb.skin_mm), voxel_mm), limb.fat_hu)
    _paint(hu, _coverage(skin + np.float32(limb.skin_mm + limb.fat_mm), voxel_mm), limb.soft_hu)
    for bone in limb.bones:
        _paint_bone(hu, bone, grid_mm, voxel_mm)
    return hu
