"""`make_phantom`: a random, deterministic forearm or hand CT in HU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from drrgen.phantoms.anatomy import LAYOUTS, Limb
from drrgen.phantoms.render import render_limb
from drrgen.volume.volume import Volume

KINDS = tuple(LAYOUTS)
REFERENCE_FOV_MM = np.array([128.0, 128.0, 160.0])  # the field of view the layouts are sized for


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) pose: mirror for a right arm half of the time, roll about the long axis up to
    +-25 deg (pronation), tilts of the long axis up to +-8 deg."""
    mirror = np.diag([-1.0 if rng.random() < 0.5 else 1.0, 1.0, 1.0])
    rz, rx, ry = np.deg2rad([rng.uniform(-25, 25), rng.uniform(-8, 8), rng.uniform(-8, 8)])
    cz, sz, cx, sx, cy, sy = np.cos(rz), np.sin(rz), np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry)
    z_rot = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    x_rot = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    y_rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return y_rot @ x_rot @ z_rot @ mirror


def _posed(limb: Limb, matrix: np.ndarray, scale: float) -> Limb:
    """The limb with every rod mapped by (3, 3) `matrix` and scaled by `scale` (thicknesses too)."""
    bones = [
        replace(
            b,
            rods=tuple(r.transformed(matrix, scale) for r in b.rods),
            cortex_mm=b.cortex_mm * scale,
        )
        for b in limb.bones
    ]
    envelope = [(r.transformed(matrix, scale), k * scale) for r, k in limb.envelope]
    return replace(
        limb,
        bones=bones,
        envelope=envelope,
        skin_mm=limb.skin_mm * scale,
        fat_mm=limb.fat_mm * scale,
    )


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] = (128, 128, 160),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    kind: str = "forearm",
    noise_hu: float = 10.0,
) -> Volume:
    """A procedural limb CT: long bones with cortical shells and marrow, joints with gaps,
    soft tissue, fat and skin, in air. Deterministic for a seed.

    The limb's long axis runs along LPS z (superior up: elbow or wrist at the top), so an AP
    `carm_view` shows the bones vertically. The seed varies the bones shown (wrist or elbow
    field of view, thumb or not), their sizes, positions, curvature and joint gaps, the side
    (left/right), roll and tilt, and the materials. Anatomy is sized for a 128 x 128 x 160 mm
    field of view and scaled isotropically to fit smaller or larger ones.

    Args:
        seed: random seed.
        shape: grid size (ni, nj, nk).
        spacing_mm: voxel size along i, j, k, mm.
        kind: "forearm" or "hand".
        noise_hu: standard deviation of added Gaussian noise, HU (0 for none).

    Returns:
        A `Volume` with (nk, nj, ni) float32 HU, axes along LPS (identity direction) and the
        grid centre at a seed-dependent position (non-zero origin).
    """
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
    rng = np.random.default_rng([int(seed), KINDS.index(kind)])
    limb = LAYOUTS[kind](rng)
    fov = np.array(shape) * spacing
    scale = float(np.min(fov / REFERENCE_FOV_MM)) * rng.uniform(0.9, 1.1)
    limb = _posed(limb, _rotation(rng), scale)
    grid = [
        ((np.arange(n) - (n - 1) / 2) * s).astype(np.float32)
        for n, s in zip(shape, spacing, strict=True)
    ]
    hu = render_limb(limb, grid, voxel_mm=float(spacing.mean()))
    if noise_hu > 0:
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_hu)
    centre = np.round(rng.uniform([-80, -60, -400], [80, 60, 400]), 1)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(spacing)
    affine[:3, 3] = centre - (np.array(shape) - 1) / 2 * spacing
    return Volume(hu, affine, f"phantom:{kind}:seed={seed}")
