"""Rasterise a `Limb` into an HU grid (float32, [k, j, i]), with partial-volume edges (no
staircase in the DRRs). Coordinates in mm, values in HU, clipped to the CT range
[-1024, 3071] HU at the top like a real scanner's (metal saturates)."""

from __future__ import annotations

import numpy as np

from drrgen.phantoms.limb import Bone, Cast, Limb, Metal
from drrgen.phantoms.rods import end_weight, rod_box, rod_sdf, smooth_min
from drrgen.volume.volume import HU_AIR

_FAR = np.float32(1e6)
_BONE_BLEND_MM = 6.0  # fillet where the rods of one bone meet
_SHAFT_ASPECT = 4.0  # rods at least this many times longer than wide have a shaft
_END_THINNING = 0.6  # the cortex at bone ends is this fraction thinner than along the shaft
HU_MAX = 3071.0  # top of the 12-bit CT range


def _coverage(sdf: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Fraction of a voxel inside the surface sdf = 0 (linear ramp over one voxel)."""
    return np.clip(np.float32(0.5) - sdf / np.float32(voxel_mm), np.float32(0), np.float32(1))


def _paint(hu: np.ndarray, coverage: np.ndarray, value) -> None:
    """Composite `value` over `hu` in place, weighted by `coverage` (inner layers last)."""
    hu += coverage * (np.float32(value) - hu)


def _envelope_sdf(limb: Limb, grid_mm, shape_kji, reach_mm: float = 0.0) -> np.ndarray:
    """Signed distance (mm) to the skin: smooth union of the envelope rods, exact enough up to
    `reach_mm` outside, 1e6 far away."""
    sdf = np.full(shape_kji, _FAR, dtype=np.float32)
    x, y, z = grid_mm
    for rod, blend_mm in limb.envelope:
        box = rod_box(rod, grid_mm, margin_mm=blend_mm + 2 + reach_mm)
        d, _ = rod_sdf(rod, x[None, None, box[2]], y[None, box[1], None], z[box[0], None, None])
        sdf[box] = smooth_min(sdf[box], d, blend_mm)
    return sdf


def _union_box(boxes) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every non-empty box of `boxes` (None if all are empty)."""
    boxes = [b for b in boxes if all(s.stop > s.start for s in b)]
    if not boxes:
        return None
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )


def _is_shaft(rod, first: bool) -> bool:
    """Whether a rod of a bone is a shaft: its first rod when it is long (at least
    `_SHAFT_ASPECT` x its widest radius), a later one only when also >= 60 mm long."""
    long = rod.length_mm >= _SHAFT_ASPECT * rod.reach_mm
    return long and (first or rod.length_mm >= 60.0)


def _paint_bone(hu: np.ndarray, bone: Bone, grid_mm, voxel_mm: float) -> None:
    """Cortical shell, then marrow (cancellous near the ends) inside it, in place.

    Along a shaft (see `_is_shaft`) the marrow turns cancellous and the cortex thins towards
    its ends; other rods (condyles, carpals, tarsals, patella) are bone ends throughout.
    """
    x, y, z = grid_mm
    box = _union_box([rod_box(r, grid_mm, margin_mm=2 * voxel_mm) for r in bone.rods])
    if box is None:
        return
    xs, ys, zs = x[None, None, box[2]], y[None, box[1], None], z[box[0], None, None]
    sdf, ends = None, None
    for n, rod in enumerate(bone.rods):
        d, t = rod_sdf(rod, xs, ys, zs)
        if _is_shaft(rod, first=n == 0):
            e = end_weight(t)
        else:
            e = np.float32(1)
        if sdf is None:
            sdf, ends = d, np.broadcast_to(e, d.shape)
        else:
            ends = np.where(d < sdf, e, ends)
            sdf = smooth_min(sdf, d, _BONE_BLEND_MM)
    ends = np.minimum(ends, np.float32(1))
    cortex = np.float32(bone.cortex_mm) * (np.float32(1) - np.float32(_END_THINNING) * ends)
    marrow = np.float32(bone.marrow_hu) + np.float32(bone.cancellous_hu - bone.marrow_hu) * ends
    block = hu[box]
    _paint(block, _coverage(sdf, voxel_mm), bone.cortical_hu)
    _paint(block, _coverage(sdf + cortex, voxel_mm), marrow)


def _paint_cast(hu: np.ndarray, skin: np.ndarray, cast: Cast, grid_mm, voxel_mm: float) -> None:
    """Shell and padding outside the skin, between the cast's end planes, in place (before
    the skin is painted: the skin's layers then cover the inside)."""
    x, y, z = grid_mm
    a = np.asarray(cast.a, np.float64)
    axis = np.asarray(cast.b, np.float64) - a
    length = float(np.linalg.norm(axis))
    d = (axis / max(length, 1e-9)).astype(np.float32)
    f32 = np.float32
    t = (x[None, None, :] - f32(a[0])) * d[0] + (y[None, :, None] - f32(a[1])) * d[1]
    t = t + (z[:, None, None] - f32(a[2])) * d[2]
    along = np.clip(np.minimum(t, f32(length) - t) / f32(voxel_mm) + f32(0.5), f32(0), f32(1))
    outer = f32(cast.gap_mm + cast.thickness_mm)
    _paint(hu, _coverage(skin - outer, voxel_mm) * along, cast.hu)
    _paint(hu, _coverage(skin - f32(cast.gap_mm), voxel_mm) * along, cast.padding_hu)


def _paint_metal(hu: np.ndarray, metal: Metal, grid_mm, voxel_mm: float) -> None:
    """The implant's rods (plain union) over everything, in place."""
    x, y, z = grid_mm
    box = _union_box([rod_box(r, grid_mm, margin_mm=2 * voxel_mm) for r in metal.rods])
    if box is None:
        return
    xs, ys, zs = x[None, None, box[2]], y[None, box[1], None], z[box[0], None, None]
    sdf = np.min([rod_sdf(r, xs, ys, zs)[0] for r in metal.rods], axis=0)
    _paint(hu[box], _coverage(sdf, voxel_mm), metal.hu)


def render_limb(limb: Limb, grid_mm: list[np.ndarray], voxel_mm: float) -> np.ndarray:
    """HU values of the limb on a grid: air, cast, skin, fat, soft tissue, bones, metal.

    Args:
        limb: the layout, in the coordinates of `grid_mm`.
        grid_mm: [x (ni,), y (nj,), z (nk,)] increasing float32 coordinates of the voxel
            centres, mm.
        voxel_mm: voxel size for the partial-volume ramp, mm.

    Returns:
        (nk, nj, ni) float32 HU, at most `HU_MAX`.
    """
    shape = (len(grid_mm[2]), len(grid_mm[1]), len(grid_mm[0]))
    cast = limb.cast
    reach = 0.0 if cast is None else cast.gap_mm + cast.thickness_mm + 2 * voxel_mm
    skin = _envelope_sdf(limb, grid_mm, shape, reach)
    hu = np.full(shape, HU_AIR, dtype=np.float32)
    if cast is not None:
        _paint_cast(hu, skin, cast, grid_mm, voxel_mm)
    _paint(hu, _coverage(skin, voxel_mm), limb.skin_hu)
    _paint(hu, _coverage(skin + np.float32(limb.skin_mm), voxel_mm), limb.fat_hu)
    _paint(hu, _coverage(skin + np.float32(limb.skin_mm + limb.fat_mm), voxel_mm), limb.soft_hu)
    for bone in limb.bones:
        _paint_bone(hu, bone, grid_mm, voxel_mm)
    if limb.metal is not None:
        _paint_metal(hu, limb.metal, grid_mm, voxel_mm)
    return np.minimum(hu, np.float32(HU_MAX), out=hu)
