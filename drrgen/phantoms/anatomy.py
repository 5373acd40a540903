"""Random layouts of the upper limb (forearm, hand, elbow) as rods, for a left arm, and the
registry `LAYOUTS` of every kind (the lower limb's layouts are in `lower`).

Frame (see `limb`): mm, grid centre at 0, axes as LPS: +x patient left (lateral for a left
arm: radius and thumb side), +y posterior (the palm faces -y, anatomical position), +z
superior (shoulder up, fingers down). Sizes are for a 128 x 128 x 160 mm field of view;
`make_phantom` mirrors, rotates and scales the layout afterwards.
"""

from __future__ import annotations

import numpy as np

from drrgen.phantoms.limb import TOP as _TOP
from drrgen.phantoms.limb import Bone, Limb, rotation_x, soft, turned
from drrgen.phantoms.limb import rod as _rod
from drrgen.phantoms.limb import sheath as _sheath
from drrgen.phantoms.limb import unit as _unit
from drrgen.phantoms.lower import foot, knee, leg
from drrgen.phantoms.rods import Rod

__all__ = ["LAYOUTS", "Bone", "Limb", "elbow", "foot", "forearm", "hand", "knee", "leg"]


def _tilt(u: np.ndarray, towards_x_deg: float, towards_y_deg: float) -> np.ndarray:
    """Direction `u` turned by the given angles about the y axis and then the x axis."""
    cy, sy = np.cos(np.deg2rad(towards_x_deg)), np.sin(np.deg2rad(towards_x_deg))
    cx, sx = np.cos(np.deg2rad(towards_y_deg)), np.sin(np.deg2rad(towards_y_deg))
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # -z turns towards +x
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])  # -z turns towards -y (palm side)
    return _unit(rx @ ry @ u)


def _chain(rng, start, direction, lengths, radii, flares, gap_mm, flex_deg) -> list[Rod]:
    """Bones end to end from `start` along `direction`, joint gaps of `gap_mm`, each joint
    flexed towards the palm by up to `flex_deg` degrees.

    Args:
        lengths: bone lengths including the rounded ends, mm.
        radii: (radius_a, radius_b) per bone, mm.
        flares: (flare_a, flare_b) per bone.
    """
    rods, p, u = [], np.asarray(start, float), _unit(direction)
    for length, (ra, rb), (fa, fb) in zip(lengths, radii, flares, strict=True):
        cap_a, cap_b = ra * (1 + fa), rb * (1 + fb)
        a = p + cap_a * u
        b = a + max(length - cap_a - cap_b, 1.0) * u
        rods.append(_rod(a, b, ra, rb, fa, fb, rng.uniform(-0.5, 0.5), (0.0, 1.0, 0.0)))
        p = b + (cap_b + gap_mm) * u
        u = _tilt(u, rng.uniform(-3, 3), rng.uniform(0, flex_deg))
    return rods


def _carpal_row(rng, x_centre, z, radii, gap_mm, y=0.0) -> list[Rod]:
    """Small bones side by side along x (lateral first), the row centred on `x_centre`;
    each bone is a short rod along x, i.e. a rounded, slightly elongated nodule."""
    halves = [r * rng.uniform(0.2, 0.5) for r in radii]
    widths = [2 * (r + h) for r, h in zip(radii, halves, strict=True)]
    x = x_centre + (sum(widths) + gap_mm * (len(radii) - 1)) / 2
    rods = []
    for r, h, w in zip(radii, halves, widths, strict=True):
        c = np.array([x - w / 2, y + rng.uniform(-1.5, 1.5), z + rng.uniform(-1.5, 1.5)])
        rods.append(_rod(c + [h, 0, 0], c - [h, 0, 0], r, r * rng.uniform(0.85, 1.0)))
        x -= w + gap_mm
    return rods


def _distal_forearm(rng, z_wrist: float, sep: float) -> list[Rod]:
    """Radius (bowing laterally) and ulna from above, ending at the wrist (surface z_wrist)."""
    fr, fu = rng.uniform(0.4, 0.55), rng.uniform(0.3, 0.4)
    rr, ru = rng.uniform(8.0, 9.5), rng.uniform(5.0, 6.0)
    z_ulna = z_wrist + rng.uniform(1.0, 4.0)  # ulnar variance: the ulna ends a bit higher
    radius = _rod(
        [sep / 2 - 2, 1, _TOP], [sep / 2 + 2, 0, z_wrist + rr * (1 + fr)],
        rng.uniform(6.0, 7.0), rr, 0.0, fr, rng.uniform(3.0, 7.0), (1, 0, 0),
    )  # fmt: skip
    ulna = _rod(
        [-sep / 2, 3, _TOP], [-sep / 2 - 1, 3, z_ulna + ru * (1 + fu)],
        rng.uniform(6.5, 7.5), ru, 0.0, fu, rng.uniform(1.0, 3.0), (0, 1, 0),
    )  # fmt: skip
    return [radius, ulna]


def _wrist(rng, z_wrist: float) -> tuple[list[Rod], float]:
    """Two rows of carpal bones and the pisiform below the wrist, and the z of their lower
    edge, mm."""
    gap = rng.uniform(2.0, 3.5)
    proximal = rng.uniform(4.0, 5.5, size=3)
    z1 = z_wrist - gap - proximal.max()
    row1 = _carpal_row(rng, 1.0, z1, proximal, gap)
    distal = rng.uniform(3.8, 5.2, size=4)
    z2 = z1 - proximal.max() - gap - distal.max() - 3.0  # 3 mm: room for the z jitter
    row2 = _carpal_row(rng, 3.0, z2, distal, gap, y=-1.0)
    tri = row1[-1]  # the pisiform sits on the palmar (-y) side of the triquetrum
    centre = (tri.a + tri.b) / 2 - [0.0, tri.radius_a + 3.0 + 1.5, 2.0]
    return row1 + row2 + [_rod(centre, centre, 3.0, 3.0)], z2 - distal.max()


# Finger bones (index, middle, ring, little): lengths in mm, radii and flares per bone.
_FINGER_MM = np.array([[66, 40, 23, 17], [63, 44, 27, 18], [57, 41, 26, 18], [52, 33, 18, 16]])
_FINGER_RADII = [(3.6, 4.0), (4.0, 3.4), (3.3, 3.0), (2.8, 2.4)]
_FINGER_FLARES = [(0.2, 0.55), (0.35, 0.3), (0.3, 0.3), (0.3, 0.35)]
_RAY_SPACING_MM = 10.0  # between neighbouring metacarpal bases
_THUMB_MM = np.array([45, 31, 24])
_THUMB_RADII = [(4.2, 4.4), (4.2, 3.6), (3.4, 2.8)]
_THUMB_FLARES = [(0.35, 0.5), (0.35, 0.3), (0.3, 0.35)]


def _hand_rays(rng, z_base: float, thumb: bool, x0: float) -> tuple[list[Rod], list[Rod]]:
    """Metacarpals and phalanges, fanning out from the carpus: (metacarpals, phalanges)."""
    scale = rng.uniform(0.9, 1.1)
    spread = rng.uniform(0.8, 1.3)
    down = np.array([0.0, 0.0, -1.0])
    metacarpals, phalanges = [], []
    for f in range(4):
        start = [x0 - _RAY_SPACING_MM * f, rng.uniform(-1, 1), z_base]
        direction = _tilt(down, spread * (7 - 6 * f) + rng.uniform(-2, 2), 0)
        rods = _chain(
            rng, start, direction, _FINGER_MM[f] * scale, _FINGER_RADII, _FINGER_FLARES,
            rng.uniform(2.0, 3.0), 12.0,
        )  # fmt: skip
        metacarpals.append(rods[0])
        phalanges += rods[1:]
    if thumb:
        direction = _tilt(down, rng.uniform(30, 45), rng.uniform(20, 35))
        rods = _chain(
            rng, [x0 + 10.0, -6.0, z_base + 6.0], direction, _THUMB_MM * scale, _THUMB_RADII,
            _THUMB_FLARES, rng.uniform(2.0, 3.0), 10.0,
        )  # fmt: skip
        metacarpals.append(rods[0])
        phalanges += rods[1:]
    return metacarpals, phalanges


def _elbow(rng, z_joint: float, sep: float) -> list:
    """Distal humerus above the joint line z_joint; radial head and ulna (olecranon) below.

    The humerus is the union of a shaft and a transverse condylar rod (a T), the ulna the union
    of its shaft and the olecranon that reaches up behind the condyles.
    """
    condyle_r = rng.uniform(7.5, 9.0)
    zc = z_joint + condyle_r
    half_width = sep / 2 + rng.uniform(10.0, 14.0)
    condyles = _rod(
        [half_width, 0, zc], [-half_width - 3, 0, zc + 2], condyle_r * 0.8, condyle_r * 0.7,
        0.45, 0.45,
    )  # fmt: skip
    shaft_end_r = rng.uniform(8.5, 10.0)
    shaft = _rod([1, 2, _TOP], [0, 1, zc + condyle_r], rng.uniform(8.0, 9.5), shaft_end_r, 0.0, 0.2)
    gap = rng.uniform(2.5, 3.5)
    head_r = rng.uniform(4.5, 5.5)
    radius = _rod(
        [sep / 2 + 3, 0, z_joint - gap - head_r * 1.7], [sep / 2, 1, -_TOP],
        head_r, rng.uniform(6.0, 7.0), 0.7, 0.0, rng.uniform(-5.0, -2.0), (1, 0, 0),
    )  # fmt: skip
    x_u, z_u = -sep / 2 + 2, z_joint - gap - 6.0
    ulna_shaft = _rod(
        [x_u, 6, z_u], [-sep / 2, 3, -_TOP], rng.uniform(7.0, 8.0), rng.uniform(5.5, 6.5),
        0.3, 0.0, rng.uniform(2.0, 4.0), (0, 1, 0),
    )  # fmt: skip
    behind = 1.0 + 1.2 * shaft_end_r + gap + 6.0  # olecranon axis: behind the humerus
    olecranon = _rod([x_u, behind, zc + 4.0], [x_u, 6, z_u], 6.0, 7.5)
    return [(shaft, condyles), radius, (ulna_shaft, olecranon)]


def _forearm_sheath(sep: float, z_top: float, z_end: float, radii, blend_mm: float) -> list:
    """Two blended soft-tissue rods, radial and ulnar, from `z_top` down to `z_end`.

    Args:
        radii: ((radial top, radial end), (ulnar top, ulnar end)) radii, mm.
    """
    (r_top, r_end), (u_top, u_end) = radii
    return [
        (_rod([sep / 2, -1.5, z_top], [sep / 2 + 2, -1, z_end], r_top, r_end), blend_mm),
        (_rod([-sep / 2, 2.5, z_top], [-sep / 2, 2, z_end], u_top, u_end), blend_mm),
    ]


def _carpus_sheath(sep: float, z: float, blend_mm: float) -> list:
    """A transverse soft-tissue rod across the carpus at height z."""
    return [(_rod([sep / 2 + 7, -2, z], [-sep / 2 - 5, 0, z], 14.0, 13.0), blend_mm)]


def forearm(rng: np.random.Generator) -> Limb:
    """Radius and ulna with either the wrist and carpus (60 %) or the elbow in view."""
    sep = rng.uniform(20.0, 26.0)
    if rng.random() < 0.6:  # distal forearm, wrist and carpus
        z_wrist = rng.uniform(-40.0, -20.0)
        cast_zone = (z_wrist - 45.0, _TOP)  # a short arm cast ends at the metacarpal heads
        carpals, z_low = _wrist(rng, z_wrist)
        bases = [  # metacarpal bases leaving the field of view
            _rod([x, 0, z_low - 7.5], [x * 1.3, 0, -_TOP], 3.8, 3.6, 0.2)
            for x in _RAY_SPACING_MM * np.array([1.5, 0.5, -0.5, -1.5]) + rng.uniform(-1, 1)
        ]
        bones = _distal_forearm(rng, z_wrist, sep) + carpals + bases
        radii = ((rng.uniform(21, 25), 16.0), (rng.uniform(20, 24), 15.0))
        envelope = (
            _forearm_sheath(sep, _TOP, z_wrist - 8, radii, 14.0)
            + _carpus_sheath(sep, z_wrist - 20, 10.0)
            + _sheath(bases, 10.0, radius_mm=11.0)
        )
    else:  # proximal forearm and elbow
        z_joint = rng.uniform(10.0, 35.0)
        cast_zone = (-_TOP, _TOP)  # a long arm cast
        bones = _elbow(rng, z_joint, sep)
        arm = _rod([0, 4, _TOP], [0, 4, z_joint + 5], rng.uniform(27, 31), 30.0)
        radii = ((29.0, rng.uniform(20, 24)), (29.0, rng.uniform(19, 23)))
        envelope = [(arm, 14.0)] + _forearm_sheath(sep, z_joint, -_TOP, radii, 14.0)
    return soft(rng, bones, envelope, cast_zone=cast_zone)


def hand(rng: np.random.Generator) -> Limb:
    """Distal radius and ulna, carpus, metacarpals and phalanges (thumb in 80 % of hands)."""
    sep = rng.uniform(20.0, 24.0)
    z_wrist = rng.uniform(40.0, 75.0)
    carpals, z_low = _wrist(rng, z_wrist)
    z_base = z_low - rng.uniform(2.0, 3.0)
    metacarpals, phalanges = _hand_rays(rng, z_base, rng.random() < 0.8, sep / 2 + 2)
    envelope = (
        _forearm_sheath(sep, _TOP, z_wrist - 6, ((20.0, 16.0), (19.0, 14.0)), 12.0)
        + _carpus_sheath(sep, z_wrist - 14, 10.0)
        + _sheath(metacarpals, 9.0, radius_mm=float(rng.uniform(10.0, 12.0)))
        + _sheath(phalanges, 1.0, pad_mm=rng.uniform(3.5, 4.5))
    )
    bones = _distal_forearm(rng, z_wrist, sep) + carpals + metacarpals + phalanges
    return soft(rng, bones, envelope, fat=(2.0, 4.0), cast_zone=(z_base - 35.0, _TOP))


def elbow(rng: np.random.Generator) -> Limb:
    """Distal humerus, radial head and proximal ulna (olecranon), the forearm flexed forwards
    by 0-100 deg about the condyles (extended AP to flexed lateral positioning).

    Flexed elbows sit lower and further back in the field of view, so that the forearm,
    which points anteriorly (-y), stays partly in view.
    """
    sep = rng.uniform(20.0, 26.0)
    flexion = float(rng.uniform(0.0, 100.0))
    lift = np.sin(np.deg2rad(flexion))
    z_joint = rng.uniform(-5.0, 20.0) - 25.0 * lift
    humerus, radius, ulna = _elbow(rng, z_joint, sep)
    centre = humerus[1].a * [0.0, 1.0, 1.0]  # on the condylar axis (x = 0)
    arm = _rod([0, 4, _TOP], [0, 4, z_joint + 5], rng.uniform(26, 32), rng.uniform(27, 31))
    radii = ((rng.uniform(27, 31), rng.uniform(20, 24)), (rng.uniform(27, 31), rng.uniform(19, 23)))
    forearm_env = _forearm_sheath(sep, z_joint + 4, -_TOP, radii, 14.0)
    bend = rotation_x(-flexion)  # the forearm swings anteriorly (-y)
    back = [0.0, 22.0 * lift, 0.0]
    bones = turned([humerus], np.eye(3), offset=back) + turned([radius, ulna], bend, centre, back)
    envelope = turned([(arm, 14.0)], np.eye(3), offset=back) + turned(
        forearm_env, bend, centre, back
    )
    return soft(rng, bones, envelope, pose={"flexion_deg": flexion})


LAYOUTS = {
    "forearm": forearm,
    "hand": hand,
    "elbow": elbow,
    "knee": knee,
    "leg": leg,
    "foot": foot,
}
