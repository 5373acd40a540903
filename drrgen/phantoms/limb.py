"""What a phantom is made of (`Bone`, `Cast`, `Metal`, `Limb`) and the helpers every layout uses.

Frame of the layouts: phantom coordinates in mm with the grid centre at 0, axes as LPS: +x
patient left, +y posterior, +z superior. Layouts are drawn for a LEFT limb, so +x is lateral
(radius, thumb, fibula side) and -y anterior (palm, patella, toes). Sizes are for a
128 x 128 x 160 mm field of view (`FOV_HALF_MM`); `make_phantom` mirrors (right limbs),
rotates and scales the layout afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drrgen.phantoms.rods import Rod

TOP = 150.0  # mm; rods that leave the field of view end here (or at -TOP)
FOV_HALF_MM = np.array([64.0, 64.0, 80.0])  # half the reference field of view, mm


@dataclass(frozen=True)
class Bone:
    """A bone: rods with a cortical shell and marrow (cancellous bone near the ends).

    Attributes:
        rods: the outer surface is the (smooth) union of these rods.
        cortex_mm: shell thickness along the shaft (thinner towards the ends), mm.
        cortical_hu, marrow_hu, cancellous_hu: HU of shell, shaft marrow and bone ends.
    """

    rods: tuple[Rod, ...]
    cortex_mm: float
    cortical_hu: float
    marrow_hu: float
    cancellous_hu: float


@dataclass(frozen=True)
class Cast:
    """A plaster or fibreglass shell around the skin, between two planes across the limb.

    The shell covers the points whose projection on the segment `a` -> `b` falls inside it;
    it lies `gap_mm` outside the skin (padding) and is `thickness_mm` thick.

    Attributes:
        a, b: (3,) ends of the covered stretch of the limb axis, mm.
        gap_mm: padding between skin and shell, mm.
        thickness_mm: shell thickness, mm.
        hu, padding_hu: HU of the shell and of the padding under it.
    """

    a: np.ndarray
    b: np.ndarray
    gap_mm: float
    thickness_mm: float
    hu: float
    padding_hu: float

    def transformed(self, rotation: np.ndarray, scale: float) -> Cast:
        """The cast mapped like `Rod.transformed` (thicknesses scaled too)."""
        return Cast(
            scale * rotation @ np.asarray(self.a, float),
            scale * rotation @ np.asarray(self.b, float),
            scale * self.gap_mm,
            scale * self.thickness_mm,
            self.hu,
            self.padding_hu,
        )


@dataclass(frozen=True)
class Metal:
    """An implant: a plate (parallel thin rods side by side) and screws (rods through the bone).

    Attributes:
        rods: the implant is the union of these rods.
        hu: its HU before the CT range clip (3071 HU).
    """

    rods: tuple[Rod, ...]
    hu: float


@dataclass(frozen=True)
class Limb:
    """Everything `render_limb` needs.

    Attributes:
        bones: the bones (disjoint: joints keep a gap).
        envelope: (rod, blend_mm) pairs whose smooth union is the skin surface.
        skin_mm, fat_mm: thickness of skin and subcutaneous fat under the surface, mm.
        skin_hu, fat_hu, soft_hu: HU of skin, fat and the soft tissue (muscle) inside.
        cast_zone: (z_low, z_high) stretch of the layout's z axis a cast may cover, mm.
        cast: the cast, or None.
        metal: the implant, or None.
        side: "left" or "right" (mirrored) limb.
        pose: joint angles and framing the layout drew, e.g. {"flexion_deg": 35.0}.
    """

    bones: list[Bone]
    envelope: list[tuple[Rod, float]]
    skin_mm: float
    fat_mm: float
    skin_hu: float
    fat_hu: float
    soft_hu: float
    cast_zone: tuple[float, float] = (-TOP, TOP)
    cast: Cast | None = None
    metal: Metal | None = None
    side: str = "left"
    pose: dict = field(default_factory=dict, compare=False)


def rod(a, b, ra, rb, fa=0.0, fb=0.0, bow=0.0, bow_dir=(1.0, 0.0, 0.0)) -> Rod:
    """Shorthand for `Rod` from plain sequences (mm)."""
    return Rod(
        np.asarray(a, float), np.asarray(b, float), ra, rb, fa, fb, bow, np.asarray(bow_dir, float)
    )


def unit(v) -> np.ndarray:
    """`v` / |v|."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def rotation_x(deg: float) -> np.ndarray:
    """(3, 3) right-handed rotation about +x: positive angles turn -y (anterior) towards -z."""
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def turned(items, rotation: np.ndarray, centre=(0.0, 0.0, 0.0), offset=(0.0, 0.0, 0.0)) -> list:
    """Rods, tuples of rods (bones) or (rod, blend_mm) pairs (envelope) turned by `rotation`
    about `centre`, then moved by `offset` (mm)."""
    c = np.asarray(centre, dtype=np.float64)
    t = c + np.asarray(offset, dtype=np.float64)

    def one(r: Rod) -> Rod:
        return Rod(
            t + rotation @ (r.a - c), t + rotation @ (r.b - c), r.radius_a, r.radius_b,
            r.flare_a, r.flare_b, r.bow_mm, rotation @ r.bow_dir,
        )  # fmt: skip

    out = []
    for item in items:
        if isinstance(item, Rod):
            out.append(one(item))
        elif len(item) == 2 and not isinstance(item[1], Rod):  # (rod, blend_mm)
            out.append((one(item[0]), item[1]))
        else:
            out.append(tuple(one(r) for r in item))
    return out


def materials(rng: np.random.Generator) -> dict:
    """Per-limb bone materials: bone density varies between people, little between bones.

    Cortical 1100-1750 HU, marrow 80-300 (fatty to red marrow), cancellous 220-450, cortical
    thickness x0.7-1.3 (thin, osteoporotic, to thick cortices).
    """
    return {
        "cortical_hu": float(rng.uniform(1100, 1750)),
        "marrow_hu": float(rng.uniform(80, 300)),
        "cancellous_hu": float(rng.uniform(220, 450)),
        "cortex": float(rng.uniform(0.7, 1.3)),
    }


def bone(rng: np.random.Generator, rods: Rod | tuple[Rod, ...], mat: dict) -> Bone:
    """A bone of the limb's materials `mat` (see `materials`) with a little jitter per bone;
    the cortex is 0.4 x the radius of the first rod (the shaft), 0.8-5 mm, times mat["cortex"]."""
    rods = rods if isinstance(rods, tuple) else (rods,)
    shaft_radius = min(rods[0].radius_a, rods[0].radius_b)  # the first rod is the shaft
    cortex = np.clip(0.4 * shaft_radius, 0.8, 5.0) * mat["cortex"] * rng.uniform(0.9, 1.1)
    return Bone(
        rods,
        cortex_mm=float(cortex),
        cortical_hu=float(min(mat["cortical_hu"] * rng.uniform(0.96, 1.04), 1800.0)),
        marrow_hu=float(np.clip(mat["marrow_hu"] + rng.uniform(-20, 20), 80, 300)),
        cancellous_hu=float(np.clip(mat["cancellous_hu"] + rng.uniform(-30, 30), 220, 450)),
    )


def soft(rng, bones, envelope, fat=(3.0, 7.0), cast_zone=(-TOP, TOP), pose=None) -> Limb:
    """The limb with random materials: bones (`materials`), fat -120..-80 HU, muscle 30..55 HU.

    Args:
        bones: per bone a rod or a tuple of rods.
        envelope: (rod, blend_mm) pairs of the skin surface.
        fat: range of the subcutaneous fat thickness, mm.
        cast_zone: z range a cast may cover, mm.
        pose: joint angles etc. to record in `Limb.pose`.
    """
    # The limb's materials from a child generator: `rng`'s own stream (and so the pose drawn
    # after the layout) stays what it was before per-limb materials existed.
    mat = materials(rng.spawn(1)[0])
    return Limb(
        [bone(rng, r, mat) for r in bones],
        envelope,
        skin_mm=float(rng.uniform(1.0, 2.0)),
        fat_mm=float(rng.uniform(*fat)),
        skin_hu=float(rng.uniform(20, 60)),
        fat_hu=float(rng.uniform(-120, -80)),
        soft_hu=float(rng.uniform(30, 55)),
        cast_zone=(float(cast_zone[0]), float(cast_zone[1])),
        pose=dict(pose or {}),
    )


def sheath(rods, blend_mm: float, pad_mm: float = 0.0, radius_mm=None) -> list:
    """Soft tissue around bone rods: same axis, radius `radius_mm` or the bone's plus `pad_mm`."""
    out = []
    for r in rods:
        ra = radius_mm if radius_mm is not None else r.radius_a * (1 + r.flare_a) + pad_mm
        rb = radius_mm if radius_mm is not None else r.radius_b * (1 + r.flare_b) + pad_mm
        out.append((Rod(r.a, r.b, ra, rb, 0.0, 0.0, r.bow_mm, r.bow_dir), blend_mm))
    return out
