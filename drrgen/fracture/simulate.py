"""Synthetic fractures of a CT: cut one bone with a plane and move a fragment (or open a gap).

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
   ``gap`` fractures keep the bone in place and replace a slab of ``gap_mm`` around the plane
   inside the region by soft tissue: a thin cortical break.

Everything is drawn from the given `numpy.random.Generator`, so a fracture is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from drrgen.volume.volume import Volume

KINDS = ("displaced", "gap")


@dataclass(frozen=True)
class FractureConfig:
    """Ranges the fracture parameters are drawn from (uniformly).

    Attributes:
        bone_hu: voxels above this HU are bone (cortex and dense cancellous bone).
        min_bone_mm3: smallest bone (connected component) that can be fractured, mm^3.
        margin_mm: rim of tissue around a bone that moves with its fragment, mm.
        kinds: fracture kinds to choose from (``displaced``, ``gap``).
        kind_probs: probability of each kind (normalised).
        cut_range: position of the cut along the bone's long axis, fraction of its length.
        tilt_deg: angle between the plane normal and the long axis, degrees.
        shift_mm: displacement of the fragment across the bone, mm.
        angle_deg: angulation of the fragment about an axis in the cut plane, degrees.
        axial_mm: displacement along the long axis (negative: impaction), mm.
        gap_mm: width of the slab removed by a ``gap`` fracture, mm.
    """

    bone_hu: float = 300.0
    min_bone_mm3: float = 800.0
    margin_mm: float = 1.5
    kinds: tuple[str, ...] = KINDS
    kind_probs: tuple[float, ...] = (0.7, 0.3)
    cut_range: tuple[float, float] = (0.25, 0.75)
    tilt_deg: tuple[float, float] = (0.0, 35.0)
    shift_mm: tuple[float, float] = (1.5, 4.0)
    angle_deg: tuple[float, float] = (3.0, 12.0)
    axial_mm: tuple[float, float] = (-1.5, 1.0)
    gap_mm: tuple[float, float] = (1.0, 2.5)

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
        for name in ("tilt_deg", "shift_mm", "angle_deg", "gap_mm"):
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
        kind: ``displaced`` or ``gap``.
        bone_voxels: voxels of the fractured bone component.
        point: (3,) the cut point on the bone's long axis.
        normal: (3,) the cut plane's normal (pointing into the moved fragment).
        axis: (3,) the bone's long axis.
        rotation: (3, 3) fragment rotation about `point` (identity for gaps).
        translation: (3,) fragment translation after the rotation, mm (zero for gaps).
        gap_mm: slab width of a gap fracture (0 for displaced fractures).
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


def rotation_matrix(axis: np.ndarray, deg: float) -> np.ndarray:
    """(3, 3) right-handed rotation by `deg` degrees about unit `axis` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    t = np.deg2rad(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


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


def _voxel_centres(volume: Volume, box: tuple[slice, ...]) -> np.ndarray:
    """(nk, nj, ni, 3) LPS mm centres of the voxels in `box` (array order k, j, i)."""
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    return volume.index_to_world(np.stack([i, j, k], axis=-1).astype(np.float64))


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


def simulate_fracture(
    volume: Volume,
    rng: np.random.Generator,
    cfg: FractureConfig = FractureConfig(),
    bones: tuple[np.ndarray, list[int], list[int]] | None = None,
) -> tuple[Volume, Fracture]:
    """Fracture one bone of an HU volume (see the module docstring).

    Args:
        volume: HU volume, data (nk, nj, ni), affine to LPS mm; not modified.
        rng: source of every random choice (the first draws are those of `draw_site`).
        cfg: parameter ranges.
        bones: `bone_components(volume, cfg)` if already computed (reused across studies).

    Returns:
        The fractured volume (same shape, affine and dtype; source tagged ``+fracture``) and
        the `Fracture` record.

    Raises:
        NoBoneError: no bone of at least ``min_bone_mm3``.
    """
    cfg.validate()
    bones = bone_components(volume, cfg) if bones is None else bones
    site = draw_site(volume, rng, cfg, bones)
    component_full = bones[0] == site.label
    kinds = np.asarray(cfg.kind_probs, dtype=np.float64)
    kind = cfg.kinds[int(rng.choice(len(cfg.kinds), p=kinds / kinds.sum()))]
    axis, point = site.axis, site.point
    normal = rotation_matrix(_perpendicular(rng, axis), rng.uniform(*cfg.tilt_deg)) @ axis

    spacing = float(volume.spacing.min())
    motion_mm = cfg.shift_mm[1] + max(abs(x) for x in cfg.axial_mm)
    motion_mm += np.deg2rad(cfg.angle_deg[1]) * (site.extent[1] - site.extent[0])
    margin_vox = int(np.ceil(cfg.margin_mm / spacing))
    box = _box(component_full, margin_vox + 4 + int(np.ceil(motion_mm / spacing)))
    hu = volume.data[box]
    a_inv = np.linalg.inv(volume.affine[:3, :3])
    axis_kji = (a_inv @ axis)[::-1]
    region = bone_region(component_full[box], axis_kji, margin_vox)
    side = (_voxel_centres(volume, box) - point) @ normal  # signed distance to the plane, mm
    fill, noise = _tissue_fill(hu, region, cfg.bone_hu)

    out = hu.copy()
    rotation, translation, gap = np.eye(3), np.zeros(3), 0.0
    if kind == "gap":
        gap = float(rng.uniform(*cfg.gap_mm))
        slab = region & (np.abs(side) < gap / 2)
        out[slab] = fill + noise * rng.standard_normal(int(slab.sum()))
    else:
        fragment = region & (side > 0)
        if 2 * fragment.sum() > region.sum():  # move the smaller piece
            normal, side = -normal, -side
            fragment = region & (side > 0)
        hinge = _perpendicular(rng, axis)
        rotation = rotation_matrix(hinge, rng.uniform(*cfg.angle_deg))
        shift_dir = _perpendicular(rng, axis)
        translation = shift_dir * rng.uniform(*cfg.shift_mm) + axis * rng.uniform(*cfg.axial_mm)
        out[fragment] = fill + noise * rng.standard_normal(int(fragment.sum()))
        matrix, offset = _index_map(volume, rotation, point, translation, box)
        weight = ndimage.affine_transform(
            fragment.astype(np.float32), matrix, offset, order=1, mode="constant"
        )
        moved = ndimage.affine_transform(
            np.where(fragment, hu, 0.0).astype(np.float32), matrix, offset, order=1
        )
        inside = weight > 0.5
        moved_hu = moved[inside] / weight[inside]
        out[inside] = np.maximum(out[inside], moved_hu)

    data = volume.data.copy()
    data[box] = out
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
        changed_voxels=changed,
    )
    return fractured, record
