"""`make_phantom`: a random, deterministic limb CT in HU (LPS, mm), and `phantom_layout`, the
geometry it renders (to ask a seed for its side, joint angles, cast or implant)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from drrgen.phantoms.anatomy import LAYOUTS
from drrgen.phantoms.extras import add_extras
from drrgen.phantoms.kinds import KINDS
from drrgen.phantoms.limb import Limb
from drrgen.phantoms.render import HU_MAX, render_limb
from drrgen.volume.volume import Volume

REFERENCE_FOV_MM = np.array([128.0, 128.0, 160.0])  # the field of view the layouts are sized for


def kind_of(index: int) -> str:
    """The kind of phantom `index` of a "mixed" set: the kinds in turn, KINDS[index % 6]."""
    return KINDS[int(index) % len(KINDS)]


def _rotation(rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(3, 3) pose and whether it mirrors: mirror for a right limb half of the time, roll
    about the long axis up to +-25 deg (pronation, rotation of the leg), tilts of the long
    axis up to +-8 deg."""
    mirrored = bool(rng.random() < 0.5)
    mirror = np.diag([-1.0 if mirrored else 1.0, 1.0, 1.0])
    rz, rx, ry = np.deg2rad([rng.uniform(-25, 25), rng.uniform(-8, 8), rng.uniform(-8, 8)])
    cz, sz, cx, sx, cy, sy = np.cos(rz), np.sin(rz), np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry)
    z_rot = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    x_rot = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    y_rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return y_rot @ x_rot @ z_rot @ mirror, mirrored


def _posed(limb: Limb, matrix: np.ndarray, scale: float) -> Limb:
    """The limb with every rod (bones, skin, cast, implant) mapped by (3, 3) `matrix` and
    scaled by `scale` (thicknesses too)."""
    bones = [
        replace(
            b,
            rods=tuple(r.transformed(matrix, scale) for r in b.rods),
            cortex_mm=b.cortex_mm * scale,
        )
        for b in limb.bones
    ]
    envelope = [(r.transformed(matrix, scale), k * scale) for r, k in limb.envelope]
    metal = limb.metal
    if metal is not None:
        metal = replace(metal, rods=tuple(r.transformed(matrix, scale) for r in metal.rods))
    return replace(
        limb,
        bones=bones,
        envelope=envelope,
        skin_mm=limb.skin_mm * scale,
        fat_mm=limb.fat_mm * scale,
        cast=None if limb.cast is None else limb.cast.transformed(matrix, scale),
        metal=metal,
    )


def _check(seed: int, shape, spacing_mm, kind: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """The validated (shape, spacing) of `make_phantom`'s arguments (ValueError if bad)."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
    shape = tuple(int(n) for n in shape)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if len(shape) != 3 or min(shape) < 4 or spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(
            f"phantom shape {shape} / spacing {spacing.tolist()}: need 3 axes >= 4 voxels"
        )
    if int(seed) < 0:
        raise ValueError(f"phantom seed must be >= 0, got {seed}")
    return shape, spacing


def _plan(
    seed: int, shape, spacing: np.ndarray, kind: str, devices: bool
) -> tuple[Limb, np.random.Generator]:
    """The posed limb (grid-centred mm) and the generator `make_phantom` goes on with."""
    index = KINDS.index(kind)
    rng = np.random.default_rng([int(seed), index])
    limb = LAYOUTS[kind](rng)
    limb = add_extras(limb, np.random.default_rng([int(seed), index, 1]), devices)
    fov = np.array(shape) * spacing
    scale = float(np.min(fov / REFERENCE_FOV_MM)) * rng.uniform(0.9, 1.1)
    matrix, mirrored = _rotation(rng)
    limb = replace(_posed(limb, matrix, scale), side="right" if mirrored else "left")
    return limb, rng


def phantom_layout(
    seed: int,
    shape: tuple[int, int, int] = (128, 128, 160),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    kind: str = "forearm",
    devices: bool = True,
) -> Limb:
    """The geometry `make_phantom` renders for these arguments, in mm about the grid centre
    (LPS axes), without rendering it: bones, skin, `side`, `pose` (joint angles), `cast` and
    `metal` (None when absent). Cheap (about a millisecond)."""
    shape, spacing = _check(seed, shape, spacing_mm, kind)
    return _plan(seed, shape, spacing, kind, devices)[0]


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] = (128, 128, 160),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    kind: str = "forearm",
    noise_hu: float = 10.0,
    devices: bool = True,
) -> Volume:
    """A procedural limb CT: long bones with cortical shells and marrow, joints with gaps,
    soft tissue, fat and skin, in air, sometimes a cast or a metal plate. Deterministic for a
    seed (and kind).

    Kinds (`KINDS`): "forearm" (radius and ulna, with the wrist or the elbow), "hand" (wrist,
    metacarpals, fingers), "elbow" (flexed 0-100 deg), "knee" (flexed 0-40 deg), "leg" (tibia
    and fibula shafts), "foot" (ankle, hindfoot and midfoot, plantarflexed -15..30 deg). The
    limb's long axis runs along LPS z (superior up: the proximal end at the top; a flexed
    elbow's forearm and the foot point anteriorly, -y), so an AP `carm_view` shows the long
    bones vertically.

    The seed varies: the side (left, or mirrored right), the overall size (x0.9-1.1), the
    bones' lengths, radii, flares, curvature and cortical thickness, the joint angles and
    gaps, finger spread, the framing along the limb, roll (+-25 deg) and tilt (+-8 deg), the
    materials (cortical 1100-1800 HU, marrow 80-300, cancellous 220-450, fat -120..-80,
    muscle 30-55), the soft-tissue envelope (radii x0.95-1.12, fat thickness), and in about
    10 % of seeds a cast (+200..+400 HU, 3-6 mm thick, over part of the limb) and in about
    5 % a plate with screws (~3000 HU; values are clipped to 3071 HU like a real CT's).
    `phantom_layout` tells which. Anatomy is sized for a 128 x 128 x 160 mm field of view
    and scaled isotropically to fit smaller or larger ones.

    Args:
        seed: random seed (>= 0).
        shape: grid size (ni, nj, nk).
        spacing_mm: voxel size along i, j, k, mm.
        kind: one of `KINDS`.
        noise_hu: standard deviation of added Gaussian noise, HU (0 for none).
        devices: allow casts and implants (False: the same phantom without them, e.g. for
            simulators that take everything above some HU for bone).

    Returns:
        A `Volume` with (nk, nj, ni) float32 HU, axes along LPS (identity direction) and the
        grid centre at a seed-dependent position (non-zero origin).

    Raises:
        ValueError: unknown kind (the message lists the kinds), bad shape, spacing or seed.
    """
    shape, spacing = _check(seed, shape, spacing_mm, kind)
    limb, rng = _plan(seed, shape, spacing, kind, devices)
    grid = [
        ((np.arange(n) - (n - 1) / 2) * s).astype(np.float32)
        for n, s in zip(shape, spacing, strict=True)
    ]
    hu = render_limb(limb, grid, voxel_mm=float(spacing.mean()))
    if noise_hu > 0:
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
        np.minimum(hu, np.float32(HU_MAX), out=hu)
    centre = np.round(rng.uniform([-80, -60, -400], [80, 60, 400]), 1)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = centre - (np.array(shape) - 1) / 2 * spacing
    return Volume(hu, affine, f"phantom:{kind}:seed={seed}")
