"""What varies across every kind of layout: body habitus, casts and metal implants.

All of it works on a `Limb` in layout coordinates (mm, left limb, before `make_phantom`
mirrors, rotates and scales it) and draws from its own generator, so the bones of a seed do
not depend on whether it got a cast or an implant.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from drrgen.phantoms.limb import FOV_HALF_MM, TOP, Cast, Limb, Metal, unit
from drrgen.phantoms.rods import Rod, rod_sdf, smooth_min

CAST_PROBABILITY = 0.10
METAL_PROBABILITY = 0.05
METAL_HU = (2800.0, 3400.0)  # steel and titanium; the CT range clips this to 3071 HU


def habitus(limb: Limb, rng: np.random.Generator) -> Limb:
    """Thinner or stouter soft tissue: envelope radii x0.95-1.12, fat x0.7-1.4."""
    f = float(rng.uniform(0.95, 1.12))
    envelope = [
        (replace(r, radius_a=r.radius_a * f, radius_b=r.radius_b * f), k) for r, k in limb.envelope
    ]
    return replace(limb, envelope=envelope, fat_mm=limb.fat_mm * float(rng.uniform(0.7, 1.4)))


def add_cast(limb: Limb, rng: np.random.Generator) -> Limb:
    """A plaster or fibreglass cast (+200..+400 HU, 3-6 mm thick, on 0.5-2.5 mm of padding)
    over 50-100 % of the part of `limb.cast_zone` inside the field of view."""
    half = FOV_HALF_MM[2] + 10.0
    lo, hi = np.clip(limb.cast_zone, -half, half)
    length = (hi - lo) * rng.uniform(0.5, 1.0)
    z0 = rng.uniform(lo, hi - length)
    z1 = z0 + length
    top = TOP if z1 >= half - 1 else z1  # a cast that leaves the field of view goes on
    bottom = -TOP if z0 <= -half + 1 else z0
    cast = Cast(
        np.array([0.0, 0.0, top]),
        np.array([0.0, 0.0, bottom]),
        gap_mm=float(rng.uniform(0.5, 2.5)),
        thickness_mm=float(rng.uniform(3.0, 6.0)),
        hu=float(rng.uniform(200.0, 400.0)),
        padding_hu=float(rng.uniform(-600.0, -200.0)),
    )
    return replace(limb, cast=cast)


def _skin_sdf(limb: Limb, points: np.ndarray) -> np.ndarray:
    """Signed distance of (n, 3) points to the skin (as `render_limb` computes it), mm."""
    x, y, z = (points[:, i].astype(np.float32) for i in range(3))
    sdf = np.full(len(points), 1e6, dtype=np.float32)
    for r, k in limb.envelope:
        sdf = smooth_min(sdf, rod_sdf(r, x, y, z)[0], k)
    return sdf


def _bone_sdf(rods, points: np.ndarray) -> np.ndarray:
    """Distance of (n, 3) points to the union of `rods` (negative inside), mm."""
    x, y, z = (points[:, i].astype(np.float32) for i in range(3))
    return np.min([rod_sdf(r, x, y, z)[0] for r in rods], axis=0)


def _span_in_view(r: Rod, margin_mm: float) -> tuple[float, float]:
    """Fractions (s0, s1) of the rod's axis inside the reference field of view shrunk by
    `margin_mm`, and off its rounded ends (s0 >= s1: none)."""
    a, d = np.asarray(r.a, float), np.asarray(r.b, float) - np.asarray(r.a, float)
    s0, s1 = 0.06, 0.94
    for axis in range(3):
        h = FOV_HALF_MM[axis] - margin_mm
        if abs(d[axis]) < 1e-9:
            if abs(a[axis]) > h:
                return 1.0, 0.0
            continue
        t0, t1 = sorted(((-h - a[axis]) / d[axis], (h - a[axis]) / d[axis]))
        s0, s1 = max(s0, t0), min(s1, t1)
    return s0, s1


def add_metal(limb: Limb, rng: np.random.Generator) -> Limb:
    """A plate with 3-8 screws on the shaft of a bone in view (~3000 HU), or `limb` unchanged
    when no place is found (the plate must lie under the skin and clear of other bones).

    The plate is 6-16 mm wide and 1.2-3.5 mm thick and 6-10 bone radii long; the screws run
    through the bone, 0.8-2.3 mm in radius, all sized after the bone's radius.
    """
    candidates = []
    for i, b in enumerate(limb.bones):
        r = b.rods[0]
        radius = min(r.radius_a, r.radius_b)
        s0, s1 = _span_in_view(r, margin_mm=12.0)
        span = (s1 - s0) * r.length_mm
        if radius >= 3.2 and span >= 30.0:
            candidates.append((i, s0, s1, span * radius))
    if not candidates:
        return limb
    weights = np.array([c[3] for c in candidates])
    i, s0, s1, _ = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
    host = limb.bones[i].rods[0]
    radius = float(min(host.radius_a, host.radius_b))
    span = (s1 - s0) * host.length_mm
    length = min(rng.uniform(6.0, 10.0) * radius, 0.9 * span)
    mid = rng.uniform(s0 + 0.5 * length / host.length_mm, s1 - 0.5 * length / host.length_mm)
    ds = 0.5 * length / host.length_mm
    p0, p1 = host.axis_point(mid - ds), host.axis_point(mid + ds)
    u = unit(p1 - p0)
    along = np.linspace(mid - ds, mid + ds, 5)  # the plate bends at these points (contoured)
    axis_points = host.axis_point(along)
    radii = host.radius_at(along)
    width = float(np.clip(1.7 * radius, 6.0, 16.0))
    thick = float(np.clip(0.3 * radius, 1.2, 3.5))
    screw_r = float(np.clip(0.22 * radius, 0.8, 2.3))
    others = [r for j, b in enumerate(limb.bones) if j != i for r in b.rods]
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = unit(np.cross(u, helper))
    e2 = np.cross(u, e1)
    for phi in rng.permutation(12) * (2 * np.pi / 12):
        e = np.cos(phi) * e1 + np.sin(phi) * e2  # the plate's normal, away from the bone
        side = np.cross(u, e)
        h = radii[:, None] + 0.5 * thick + 0.2
        centres = axis_points + h * e
        outer = np.concatenate([centres + (0.5 * thick + 1.0) * e + w * side for w in
                                (-0.5 * width, 0.5 * width)])  # fmt: skip
        if np.max(_skin_sdf(limb, outer)) > -(limb.skin_mm + 1.0):
            continue
        if others and np.min(_bone_sdf(others, np.concatenate([centres, outer]))) < 1.0:
            continue
        break
    else:
        return limb
    strands = max(2, int(np.ceil((width - thick) / (0.6 * thick))) + 1)
    rods = [
        Rod(p + w * side, q + w * side, 0.5 * thick, 0.5 * thick)
        for w in np.linspace(-0.5 * (width - thick), 0.5 * (width - thick), strands)
        for p, q in zip(centres[:-1], centres[1:], strict=True)
    ]
    n_screws = int(np.clip(round(length / max(7.0, 1.8 * radius)), 3, 8))
    for s in mid + ds * np.linspace(-1, 1, n_screws) * (1 - 1 / n_screws):
        c = host.axis_point(s)
        r_s = float(host.radius_at(s))
        head = c + (r_s + thick + 0.8) * e
        rods.append(Rod(head, c - (r_s + 2.0) * e, screw_r, 0.8 * screw_r))
        rods.append(Rod(head, head, 1.7 * screw_r, 1.7 * screw_r))
    return replace(limb, metal=Metal(tuple(rods), float(rng.uniform(*METAL_HU))))


def add_extras(limb: Limb, rng: np.random.Generator, devices: bool = True) -> Limb:
    """`habitus`, then, with `devices`, a cast (probability `CAST_PROBABILITY`) and a metal
    implant (`METAL_PROBABILITY`), drawn independently. Without `devices` the limb is the same
    as with them, less the cast and the implant."""
    with_cast, with_metal = rng.random(2)
    limb = habitus(limb, rng)
    if devices and with_cast < CAST_PROBABILITY:
        limb = add_cast(limb, rng)
    if devices and with_metal < METAL_PROBABILITY:
        limb = add_metal(limb, rng)
    return limb
