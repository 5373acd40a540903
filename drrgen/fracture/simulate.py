"""Synthetic fractures of a CT: cut one bone and move its fragments (or open a gap).

`simulate_fracture` works on HU volumes (data (nk, nj, ni), affine to LPS mm) and returns a new
volume on the same grid (same shape and affine), so any view of the intact volume is also a
view of the fractured one:

1. Bones: connected components of ``HU > bone_hu`` (cortex and dense bone) with at least
   ``min_bone_mm3`` of volume; one is picked with probability proportional to its size. Its
   *region* is the component with its marrow (holes filled slice by slice across the bone's
   long axis, then in 3-D) plus a rim of ``margin_mm`` of surrounding tissue.
2. Cut plane: through a point on the bone's principal (long) axis at a uniform fraction
   ``cut_range`` of its length, with the normal tilted from the axis by up to ``tilt_deg``
   (transverse to oblique fractures).
3. ``displaced`` fractures: the smaller side of the region is the fragment. Its voxels are
   resampled (trilinear, mask-normalised) under the rigid motion
   ``x -> R (x - p) + p + t``: an angulation R about an axis across the bone through the cut
   point p, a shift t across the bone and a small axial impaction or distraction. The vacated
   region is filled with the surrounding soft tissue's HU (median, with its noise), and the
   moved fragment is composited with ``max`` (overlapping bone stays bone, no holes).
   ``comminuted`` fractures cut the region with a second plane parallel to the first,
   ``segment_mm`` further along the normal: the piece beyond it moves as a displaced fragment,
   and the intermediate segment is split in two along the bone (a plane through the long
   axis), each half pushed out across the bone by its own ``fragment_shift_mm`` with a small
   rotation (a butterfly / wedge fragment). All pieces are cleared first, then composited.
   ``gap`` fractures keep the bone in place and replace a slab of ``gap_mm`` around the plane
   inside the region by soft tissue: a cortical break.

Everything is drawn from the given `numpy.random.Generator`, so a fracture is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from drrgen.geometry import rotation_matrix
from drrgen.volume.volume import Volume

KINDS = ("displaced", "comminuted", "gap")


@dataclass(frozen=True)
class FractureConfig:
    """Ranges the fracture parameters are drawn from (uniformly).

    Attributes:
        bone_hu: voxels above this HU are bone (cortex and dense cancellous bone).
        min_bone_mm3: smallest bone (connected component) that can be fractured, mm^3.
        margin_mm: rim of tissue around a bone that moves with its fragment, mm.
        kinds: fracture kinds to choose from (``displaced``, ``comminuted``, ``gap``).
        kind_probs: probability of each kind (normalised).
        cut_range: position of the cut along the bone's long axis, fraction of its length.
        tilt_deg: angle between the plane normal and the long axis, degrees.
        shift_mm: displacement of the fragment across the bone, mm.
        angle_deg: angulation of the fragment about an axis in the cut plane, degrees.
        axial_mm: displacement along the long axis (negative: impaction), mm.
        gap_mm: width of the slab removed by a ``gap`` fracture, mm.
        segment_mm: length of the intermediate segment of a ``comminuted`` fracture, mm.
        fragment_shift_mm: how far each half of that segment is pushed out, mm.

    The defaults (2026-12) are displaced fractures a radiologist calls obvious, not subtle:
    shifts of half to a whole forearm shaft's width, angulation 15-35 deg, comminution,
    breaks 3-6 mm wide, i.e. 5-20 pixels at the synthetic dataset's 0.35-0.55 mm pixels.
    (With the ranges before, 1.5-4 mm, 3-12 deg and 1-2.5 mm, no classifier learnt the task
    on CPU: test AUC 47-51 %.)
    """

    bone_hu: float = 300.0
    min_bone_mm3: float = 800.0
    margin_mm: float = 1.5
    kinds: tuple[str, ...] = KINDS
    kind_probs: tuple[float, ...] = (0.6, 0.3, 0.1)
    cut_range: tuple[float, float] = (0.25, 0.75)
    tilt_deg: tuple[float, float] = (0.0, 35.0)
    shift_mm: tuple[float, float] = (4.0, 10.0)
    angle_deg: tuple[float, float] = (15.0, 35.0)
    axial_mm: tuple[float, float] = (-3.0, 1.5)
    gap_mm: tuple[float, float] = (3.0, 6.0)
    segment_mm: tuple[float, float] = (6.0, 14.0)
    fragment_shift_mm: tuple[float, float] = (3.0, 7.0)

    def validate(self) -> FractureConfig:
        """Check names and ranges; raise `ValueError` naming the field. Returns self."""
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(
                f"fracture.kinds must be a non-empty subset of {KINDS}, got {self.kinds}"
            )
        if len(self.kind_probs) != len(self.kinds) or min(self.kind_probs) < 0:
            raise ValueError("fracture.kind_probs needs one probability >= 0 per kind")
        if sum(self.kind_probs) <= 0:
            raise ValueError("fracture.kind_probs must have a positive sum")
        lo, hi = self.cut_range
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"fracture.cut_range must satisfy 0 <= low <= high <= 1, got {lo, hi}")
        for name in (
            "tilt_deg",
            "shift_mm",
            "angle_deg",
            "gap_mm",
            "segment_mm",
            "fragment_shift_mm",
        ):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"fracture.{name} must satisfy 0 <= low <= high, got {lo, hi}")
        if self.axial_mm[0] > self.axial_mm[1]:
            raise ValueError(f"fracture.axial_mm must satisfy low <= high, got {self.axial_mm}")
        return self


@dataclass(frozen=True)
class Fracture:
    """What `simulate_fracture` did (LPS mm; directions are unit vectors).

    Attributes:
        kind: ``displaced``, ``comminuted`` or ``gap``.
        bone_voxels: voxels of the fractured bone component.
        point: (3,) the cut point on the bone's long axis.
        normal: (3,) the cut plane's normal (pointing into the moved fragment).
        axis: (3,) the bone's long axis.
        rotation: (3, 3) rotation of the main (far) fragment about `point` (identity for gaps
            and where the cut left no far piece).
        translation: (3,) its translation after the rotation, mm (zero where R is identity).
        gap_mm: slab width of a gap fracture (0 otherwise).
        segment_mm: intermediate segment length of a comminuted fracture (0 otherwise).
        fragments: pieces that moved: 1 displaced, up to 3 comminuted (the far piece and the
            two halves of the middle segment; fewer where a cut near the bone's end leaves a
            piece empty), 0 gap.
        changed_voxels: voxels whose HU changed by more than 1.
    """

    kind: str
    bone_voxels: int
    point: np.ndarray
    normal: np.ndarray
    axis: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    gap_mm: float = 0.0
    segment_mm: float = 0.0
    fragments: int = 0
    changed_voxels: int = 0

    def to_dict(self) -> dict:
        """Plain JSON-able values."""
        return dict(
            kind=self.kind,
            bone_voxels=int(self.bone_voxels),
            point=np.round(self.point, 3).tolist(),
            normal=np.round(self.normal, 5).tolist(),
            axis=np.round(self.axis, 5).tolist(),
            rotation=np.round(self.rotation, 6).tolist(),
            translation=np.round(self.translation, 3).tolist(),
            gap_mm=round(float(self.gap_mm), 3),
            segment_mm=round(float(self.segment_mm), 3),
            fragments=int(self.fragments),
            changed_voxels=int(self.changed_voxels),
        )


class NoBoneError(ValueError):
    """The volume has no bone large enough to fracture; the message names the volume."""


def bone_components(volume: Volume, cfg: FractureConfig) -> tuple[np.ndarray, list[int], list[int]]:
    """Label the bones of an HU volume.

    Returns:
        (nk, nj, ni) int32 labels of ``HU > bone_hu`` (6-connected), the labels of the
        components of at least ``min_bone_mm3``, and their voxel counts.
    """
    labels, n = ndimage.label(volume.data > cfg.bone_hu)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    keep = [int(i) for i in range(1, n + 1) if counts[i] * voxel_mm3 >= cfg.min_bone_mm3]
    return labels.astype(np.int32, copy=False), keep, [int(counts[i]) for i in keep]


def principal_axis(volume: Volume, index_kji: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Centroid, unit long axis and (min, max) extent along it of voxels, LPS mm.

    Args:
        volume: gives the affine.
        index_kji: (M, 3) voxel indices in array order (k, j, i).
    """
    xyz = volume.index_to_world(index_kji[:, ::-1].astype(np.float64))
    centre = xyz.mean(axis=0)
    _, _, vt = np.linalg.svd(xyz - centre, full_matrices=False)
    axis = vt[0] / np.linalg.norm(vt[0])
    t = (xyz - centre) @ axis
    return centre, axis, (float(t.min()), float(t.max()))


def _perpendicular(rng: np.random.Generator, axis: np.ndarray) -> np.ndarray:
    """A uniformly random unit vector perpendicular to unit `axis`."""
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    phi = rng.uniform(0, 2 * np.pi)
    return np.cos(phi) * e1 + np.sin(phi) * e2


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box of `mask` grown by `pad` voxels, clipped to the array."""
    idx = np.nonzero(mask)
    return tuple(
        slice(max(0, int(i.min()) - pad), min(n, int(i.max()) + pad + 1))
        for i, n in zip(idx, mask.shape, strict=True)
    )


def bone_region(component: np.ndarray, axis_kji: np.ndarray, margin_vox: int) -> np.ndarray:
    """The bone with its marrow, plus a rim: holes filled slice by slice across the long axis
    (an open tube has no 3-D holes), then in 3-D, then dilated by `margin_vox`."""
    along = int(np.argmax(np.abs(axis_kji)))  # array axis closest to the bone's long axis
    filled = ndimage.binary_closing(component, iterations=1) | component
    moved = np.moveaxis(filled, along, 0)
    for s in range(moved.shape[0]):  # `moved` is a view: filling writes through
        moved[s] = ndimage.binary_fill_holes(moved[s])
    filled = ndimage.binary_fill_holes(filled)
    if margin_vox > 0:
        filled = ndimage.binary_dilation(filled, iterations=margin_vox)
    return filled


def _tissue_fill(hu: np.ndarray, region: np.ndarray, bone_hu: float) -> tuple[float, float]:
    """Median HU and robust noise of the soft tissue in a shell around `region`."""
    shell = ndimage.binary_dilation(region, iterations=3) & ~region
    tissue = hu[shell & (hu > -200.0) & (hu < 0.5 * bone_hu)]
    if tissue.size < 20:
        return 40.0, 0.0
    median = float(np.median(tissue))
    return median, float(1.4826 * np.median(np.abs(tissue - median)))


def _plane_distance(volume: Volume, box: tuple[slice, ...], point, normal) -> np.ndarray:
    """(nk, nj, ni) float32 signed distance (mm) of the voxel centres in `box` to the plane
    through `point` with unit `normal`. Distance is affine in the indices, so it is a sum of
    three 1-D ramps (no (nk, nj, ni, 3) coordinate array)."""
    coef = volume.affine[:3, :3].T @ np.asarray(normal, dtype=np.float64)  # per (i, j, k) step
    offset = float((volume.affine[:3, 3] - np.asarray(point)) @ normal)
    k, j, i = (np.arange(s.start, s.stop, dtype=np.float64) for s in box)
    ramp = coef[2] * k[:, None, None] + coef[1] * j[None, :, None] + coef[0] * i[None, None, :]
    return (ramp + offset).astype(np.float32)


def _index_map(volume: Volume, rotation: np.ndarray, point, translation, box) -> tuple:
    """Matrix and offset (array order, box-local) of output voxel -> source voxel for the
    motion x -> R (x - p) + p + t, as `scipy.ndimage.affine_transform` wants them."""
    a, b = volume.affine[:3, :3], volume.affine[:3, 3]
    a_inv = np.linalg.inv(a)
    # source_world = R^T (y_world - p - t) + p, y_world = a y_ijk + b
    m = a_inv @ rotation.T @ a
    off = a_inv @ (rotation.T @ (b - point - translation) + point - b)
    perm = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)  # ijk <-> kji
    m_kji, off_kji = perm @ m @ perm, perm @ off
    o = np.array([s.start for s in box], dtype=np.float64)  # box origin, kji
    return m_kji, m_kji @ o + off_kji - o


@dataclass(frozen=True)
class Site:
    """Where a fracture goes: a bone and a point on its long axis (LPS mm).

    Attributes:
        label: the bone's label in `labels`.
        voxels: the bone's voxel count.
        centre: (3,) the bone's centroid.
        axis: (3,) unit long axis.
        extent: (min, max) of the bone along `axis` relative to `centre`, mm.
        point: (3,) the cut point on the axis.
    """

    label: int
    voxels: int
    centre: np.ndarray
    axis: np.ndarray
    extent: tuple[float, float]
    point: np.ndarray


def draw_site(
    volume: Volume,
    rng: np.random.Generator,
    cfg: FractureConfig = FractureConfig(),
    bones: tuple[np.ndarray, list[int], list[int]] | None = None,
) -> Site:
    """Pick a bone (probability proportional to its size) and a point on its long axis at a
    uniform fraction ``cut_range`` of its length. Intact studies centre their views on such a
    point too, so positives and negatives share one view distribution.

    Args:
        volume: HU volume.
        rng: random source (2 draws).
        cfg: ranges.
        bones: `bone_components(volume, cfg)` if already computed.

    Raises:
        NoBoneError: no bone of at least ``min_bone_mm3``.
    """
    labels, keep, counts = bone_components(volume, cfg) if bones is None else bones
    if not keep:
        raise NoBoneError(
            f"{volume.source or 'volume'}: no bone (HU > {cfg.bone_hu:g}) of at least "
            f"{cfg.min_bone_mm3:g} mm^3 to fracture"
        )
    weights = np.asarray(counts, dtype=np.float64)
    pick = int(rng.choice(len(keep), p=weights / weights.sum()))
    centre, axis, (t_lo, t_hi) = principal_axis(volume, np.argwhere(labels == keep[pick]))
    point = centre + axis * (t_lo + rng.uniform(*cfg.cut_range) * (t_hi - t_lo))
    return Site(keep[pick], counts[pick], centre, axis, (t_lo, t_hi), point)


@dataclass(frozen=True)
class _Prepared:
    """What a fracture of one bone needs that does not depend on the cut: the box around the
    bone (grown by the largest motion), its region there, and the tissue that fills holes."""

    box: tuple[slice, ...]
    region: np.ndarray
    fill_hu: float
    noise_hu: float


WEDGE_TURN_DEG = (3.0, 10.0)  # turn of each half of a comminuted fracture's middle segment


def _prepare(volume: Volume, site: Site, cfg: FractureConfig, bones: tuple) -> _Prepared:
    spacing = float(volume.spacing.min())
    length = site.extent[1] - site.extent[0]  # bounds every piece's lever arm about the cut
    far_mm = cfg.shift_mm[1] + max(abs(x) for x in cfg.axial_mm)
    far_mm += np.deg2rad(cfg.angle_deg[1]) * length
    wedge_mm = cfg.fragment_shift_mm[1] + np.deg2rad(WEDGE_TURN_DEG[1]) * length
    motion_mm = max(far_mm, wedge_mm)  # the box must hold every piece where it can go
    margin_vox = int(np.ceil(cfg.margin_mm / spacing))
    component = bones[0] == site.label
    box = _box(component, margin_vox + 4 + int(np.ceil(motion_mm / spacing)))
    axis_kji = (np.linalg.inv(volume.affine[:3, :3]) @ site.axis)[::-1]
    region = bone_region(component[box], axis_kji, margin_vox)
    fill, noise = _tissue_fill(volume.data[box], region, cfg.bone_hu)
    return _Prepared(box, region, fill, noise)


def _move(volume: Volume, prep: _Prepared, hu, out, fragment, rotation, point, translation):
    """Composite `fragment` (a mask of the box) of the original `hu`, moved by
    x -> R (x - p) + p + t, into `out` with max (overlapping bone stays bone, no holes)."""
    idx = np.nonzero(fragment)  # resample only around the fragment and where it can go
    lo = np.array([int(i.min()) for i in idx]) + [s.start for s in prep.box]  # k, j, i
    hi = np.array([int(i.max()) for i in idx]) + [s.start for s in prep.box]
    corners = np.array(
        [[a, b, c] for a in (lo[2], hi[2]) for b in (lo[1], hi[1]) for c in (lo[0], hi[0])]
    )
    reach = np.linalg.norm(volume.index_to_world(corners.astype(np.float64)) - point, axis=1).max()
    angle = np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))
    motion_mm = np.linalg.norm(translation) + angle * reach + 2.0
    pad = int(np.ceil(motion_mm / float(volume.spacing.min())))
    sub = tuple(
        slice(max(0, int(i.min()) - pad), min(n, int(i.max()) + pad + 1))
        for i, n in zip(idx, fragment.shape, strict=True)
    )
    whole = tuple(
        slice(b.start + s.start, b.start + s.stop) for b, s in zip(prep.box, sub, strict=True)
    )
    matrix, offset = _index_map(volume, rotation, point, translation, whole)
    weight = ndimage.affine_transform(
        fragment[sub].astype(np.float32), matrix, offset, order=1, mode="constant"
    )
    moved = ndimage.affine_transform(
        np.where(fragment[sub], hu[sub], 0.0).astype(np.float32), matrix, offset, order=1
    )
    inside = weight > 0.5
    target = out[sub]  # a view: writes go to `out`
    target[inside] = np.maximum(target[inside], moved[inside] / weight[inside])


def _shift(rng, axis, shift_mm, axial_mm) -> np.ndarray:
    """A translation across the bone of `shift_mm` plus `axial_mm` along it (ranges)."""
    return _perpendicular(rng, axis) * rng.uniform(*shift_mm) + axis * rng.uniform(*axial_mm)


def simulate_fracture(
    volume: Volume,
    rng: np.random.Generator,
    cfg: FractureConfig = FractureConfig(),
    bones: tuple[np.ndarray, list[int], list[int]] | None = None,
    cache: dict | None = None,
) -> tuple[Volume, Fracture]:
    """Fracture one bone of an HU volume (see the module docstring).

    Args:
        volume: HU volume, data (nk, nj, ni), affine to LPS mm; not modified.
        rng: source of every random choice (the first draws are those of `draw_site`).
        cfg: parameter ranges.
        bones: `bone_components(volume, cfg)` if already computed (reused across studies).
        cache: a dict kept across calls on the same volume, bones and cfg: each bone's
            region is computed once (the slow part) instead of per fracture.

    Returns:
        The fractured volume (same shape, affine and dtype; source tagged ``+fracture``) and
        the `Fracture` record.

    Raises:
        NoBoneError: no bone of at least ``min_bone_mm3``.
    """
    cfg.validate()
    bones = bone_components(volume, cfg) if bones is None else bones
    site = draw_site(volume, rng, cfg, bones)
    cache = {} if cache is None else cache
    if site.label not in cache:
        cache[site.label] = _prepare(volume, site, cfg, bones)
    prep: _Prepared = cache[site.label]
    kinds = np.asarray(cfg.kind_probs, dtype=np.float64)
    kind = cfg.kinds[int(rng.choice(len(cfg.kinds), p=kinds / kinds.sum()))]
    axis, point = site.axis, site.point
    normal = rotation_matrix(_perpendicular(rng, axis), rng.uniform(*cfg.tilt_deg)) @ axis
    hu = volume.data[prep.box]
    region = prep.region
    side = _plane_distance(volume, prep.box, point, normal)

    out = hu.copy()
    rotation, translation, gap, segment, pieces = np.eye(3), np.zeros(3), 0.0, 0.0, 0

    def tissue(mask):
        return prep.fill_hu + prep.noise_hu * rng.standard_normal(int(mask.sum()))

    if kind == "gap":
        gap = float(rng.uniform(*cfg.gap_mm))
        slab = region & (np.abs(side) < gap / 2)
        out[slab] = tissue(slab)
    else:
        if 2 * np.count_nonzero(region & (side > 0)) > np.count_nonzero(region):
            normal, side = -normal, -side  # the far fragment is the smaller piece
        segment = float(rng.uniform(*cfg.segment_mm)) if kind == "comminuted" else 0.0
        far = region & (side > segment)
        moves = []  # (mask, rotation, translation) of every piece
        if segment > 0:
            split = _plane_distance(volume, prep.box, point, _perpendicular(rng, axis))
            middle = region & (side > 0) & (side <= segment)
            for half in (middle & (split > 0), middle & (split <= 0)):
                turn = rotation_matrix(_perpendicular(rng, axis), rng.uniform(*WEDGE_TURN_DEG))
                push = _shift(rng, axis, cfg.fragment_shift_mm, (0.0, 0.0))
                moves.append((half, turn, push))
        rotation = rotation_matrix(_perpendicular(rng, axis), rng.uniform(*cfg.angle_deg))
        translation = _shift(rng, axis, cfg.shift_mm, cfg.axial_mm)
        moves.append((far, rotation, translation))
        if not far.any():  # a cut near a bone's end: no far piece, nothing to record
            rotation, translation = np.eye(3), np.zeros(3)
        moves = [m for m in moves if m[0].any()]
        for mask, _, _ in moves:  # clear every piece first, then composite the moved ones
            out[mask] = tissue(mask)
        for mask, turn, push in moves:
            _move(volume, prep, hu, out, mask, turn, point, push)
        pieces = len(moves)

    data = volume.data.copy()
    data[prep.box] = out
    changed = int(np.count_nonzero(np.abs(out - hu) > 1.0))
    fractured = Volume(data, volume.affine.copy(), f"{volume.source}+fracture")
    record = Fracture(
        kind=kind,
        bone_voxels=site.voxels,
        point=point,
        normal=normal,
        axis=axis,
        rotation=rotation,
        translation=translation,
        gap_mm=gap,
        segment_mm=segment,
        fragments=pieces,
        changed_voxels=changed,
    )
    return fractured, record
