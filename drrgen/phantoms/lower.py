"""Random layouts of the lower limb (knee, leg, foot) as rods, for a left leg.

One model of the distal femur, patella, tibia, fibula and foot (`_lower_limb`) is framed three
ways: the knee joint, the middle of the leg (tibia and fibula shafts), and the ankle with the
hindfoot and midfoot. Frame (see `limb`): mm, grid centre at 0, axes as LPS: +x patient left
(lateral for a left leg: fibula side), +y posterior (patella and toes point to -y), +z
superior. Sizes are for a 128 x 128 x 160 mm field of view, so the knee is a slim one (about
95 mm wide) and only the back half of a foot fits; `make_phantom` mirrors, rotates and
scales the layout afterwards.
"""

from __future__ import annotations

import numpy as np

from drrgen.phantoms.limb import Limb, rod, rotation_x, sheath, soft, turned, unit
from drrgen.phantoms.rods import Rod


def _femur_patella(rng, z_knee: float, gap: float) -> tuple[tuple, tuple, np.ndarray]:
    """Distal femur (shaft, two condyles, trochlea) above a joint line at `z_knee` - its
    condyles end `gap` mm above it - and the patella in front of it.

    Returns:
        (femur rods, patella rods, centre of knee flexion (3,)).
    """
    rc = rng.uniform(13.0, 15.0)  # condyle radius
    x_l, x_m = rng.uniform(16.5, 18.5), -rng.uniform(17.5, 19.5)
    zc = z_knee + gap + rc
    post = rng.uniform(5.0, 8.0)  # the condyles reach back: their posterior caps centre here
    lateral = rod([x_l, -5, zc], [x_l, post, zc], rc, rc * 0.97)
    medial = rod([x_m, -4, zc - 1.0], [x_m, post + 1, zc - 1.0], rc + 0.5, rc)
    trochlea = rod([x_l - 2, -7, zc + 7], [x_m + 2, -7, zc + 7], 12.0, 12.0)
    r_shaft = rng.uniform(11.0, 13.0)
    shaft = rod(
        [0.5, 4, z_knee + 260], [0, 1, zc + 16], r_shaft, r_shaft, 0.0,
        rng.uniform(18.0, 21.0) / r_shaft - 1, rng.uniform(2.0, 6.0), (0, -1, 0),
    )  # fmt: skip
    y_p = -7 - 12 - rng.uniform(2.5, 3.5) - 9.5  # behind it the trochlea, in front the skin
    z_p = zc + rng.uniform(8.0, 14.0)
    half = rng.uniform(6.0, 8.0)
    patella = (
        rod([3 + half, y_p, z_p + 4], [3 - half, y_p, z_p + 4], 9.5, 9.0),
        rod([3, y_p, z_p + 4], [3, y_p + 2, z_p - 12], 8.0, 5.0),
    )
    centre = np.array([0.0, post, zc])
    return (shaft, lateral, medial, trochlea), patella, centre


def _tibia_fibula(rng, z_knee: float, z_ankle: float) -> tuple[tuple, Rod, dict]:
    """Tibia from its plateau (top at `z_knee`) to the plafond (at `z_ankle`), and the fibula
    lateral and posterior of it, from below the lateral condyle to the lateral malleolus.

    Returns:
        (tibia rods, fibula rod, landmarks): rods of the medial and lateral malleoli.
    """
    r = rng.uniform(10.0, 12.0)
    top_r, bottom_r = rng.uniform(22.0, 25.0), rng.uniform(15.0, 16.5)
    rb = 0.85 * r
    shaft = rod(
        [0, 1, z_knee + 1 - top_r], [1, -1, z_ankle + 4 + bottom_r], r, rb, top_r / r - 1,
        bottom_r / rb - 1, rng.uniform(1.0, 5.0), (-1, -0.5, 0),
    )  # fmt: skip
    plateaus = (
        rod([19, -12, z_knee - 10], [19, 14, z_knee - 10], 10.0, 9.5),
        rod([-19, -13, z_knee - 10.5], [-19, 14, z_knee - 10.5], 10.5, 10.0),
    )
    tuberosity = rod([0, -16, z_knee - 24], [0, -12, z_knee - 48], 6.5, 4.0)
    crest = rod([0, -6, z_knee - 50], [0.5, -5, z_ankle + 60], 6.0, 5.0)
    plafond = rod([-10, 0, z_ankle + 7], [10, 0, z_ankle + 7], 7.0, 7.0)
    lips = rod([-8, 9, z_ankle + 6], [10, 10, z_ankle + 5], 5.0, 5.0)  # posterior malleolus
    medial_mall = rod([-16, 0, z_ankle + 16], [-23, 1, z_ankle - 9], 6.5, 5.0)
    tibia = (shaft, *plateaus, tuberosity, crest, plafond, lips, medial_mall)
    r_f = rng.uniform(5.5, 6.5)
    fibula = rod(
        [34, 13, z_knee - 28], [28.5, 9, z_ankle - 5], r_f, r_f * 0.95, 0.55, 0.45,
        rng.uniform(1.0, 4.0), (1, 0, 0),
    )  # fmt: skip
    return tibia, fibula, {"medial_malleolus": medial_mall, "fibula": fibula}


def _foot(rng, z_ankle: float, gap: float) -> tuple[list, np.ndarray]:
    """Tarsals and metatarsals below the plafond at `z_ankle` (talar dome `gap` mm below it).

    Returns:
        (bones: talus, calcaneus, navicular, cuboid, 3 cuneiforms, 5 metatarsals; centre of
        the ankle's rotation (3,)).
    """
    z_t = z_ankle - gap - 13.0  # centre of the talar dome
    talus = (
        rod([-2, 1, z_t], [3, 1, z_t], 13.0, 13.0),
        rod([-1, -6, z_t - 2], [-7, -26, z_t - 10], 8.0, 9.5),
    )
    za = z_ankle
    body = rod(
        [3, 30, za - 46], [9, -14, za - 40], rng.uniform(12.0, 13.0), 10.0, 0.2, 0.0,
        rng.uniform(-2.0, 2.0), (0, 0, 1),
    )  # fmt: skip
    tuber = rng.uniform(11.0, 13.0)  # the tuberosity: the heel, behind and below
    calcaneus = (body, rod([3, 36, za - 44], [3, 39, za - 58], tuber, tuber * 1.05))
    navicular = rod([-14, -43.5, za - 29], [-2, -43.5, za - 28], 6.0, 6.0)
    cuboid = rod([16, -34, za - 44], [17, -46, za - 46], 9.0, 8.5)
    cuneiforms = [
        rod([-17, -59, za - 34], [-17.5, -65, za - 35], 7.0, 7.0),
        rod([-4, -59, za - 28], [-4, -65, za - 29], 5.5, 5.5),
        rod([9, -59, za - 32], [9.5, -65, za - 33], 6.0, 6.0),
    ]
    spread = rng.uniform(0.8, 1.2)
    rays = [  # (base, direction, length, radii, flares) of metatarsals 1-5
        ([-18, -74, za - 36], [-0.02, -1, -0.30], 62, (6.0, 5.0), (0.25, 0.35)),
        ([-4, -72, za - 30], [0.03, -1, -0.38], 75, (4.2, 3.6), (0.4, 0.4)),
        ([9, -74, za - 34], [0.08, -1, -0.36], 70, (4.0, 3.5), (0.4, 0.4)),
        ([16, -61, za - 44], [0.12, -1, -0.30], 68, (4.0, 3.5), (0.4, 0.4)),
        ([30, -58, za - 48], [0.2, -1, -0.25], 66, (4.0, 3.5), (0.7, 0.4)),
    ]
    metatarsals = []
    for base, direction, length, (ra, rb), (fa, fb) in rays:
        u = unit(np.array(direction) * [spread, 1, 1])
        length = length * rng.uniform(0.95, 1.05)
        a = np.array(base, float) + ra * (1 + fa) * u
        b = a + (length - ra * (1 + fa) - rb * (1 + fb)) * u
        metatarsals.append(rod(a, b, ra, rb, fa, fb, rng.uniform(-1, 1), (0, 0, 1)))
    bones = [talus, calcaneus, navicular, cuboid, *cuneiforms, *metatarsals]
    return bones, np.array([0.0, 1.0, z_t])


def _envelope(rng, z_knee, z_ankle, patella, tibia_marks, foot_bones):
    """Skin surface of the lower limb: (thigh and knee, patella, leg, ankle and foot)."""
    calcaneus, midfoot, metatarsals = foot_bones[1], foot_bones[2:8], foot_bones[8:]
    midfoot = [foot_bones[0][1], *midfoot]  # talar head and neck too
    thigh = rng.uniform(40.0, 45.0)
    calf = rng.uniform(34.0, 39.0)
    knee = [
        (rod([0, 6, z_knee + 260], [0, 5, z_knee + 15], 55.0, thigh), 16.0),
        (rod([0, 6, z_knee + 15], [0, 7, z_knee - 20], thigh - 1, thigh - 3), 16.0),
    ]
    front = sheath(patella, 6.0, pad_mm=rng.uniform(4.0, 7.0))
    leg = [
        (rod([3, 12, z_knee - 20], [3, 9, z_ankle + 45], calf, 26.0), 20.0),
        (rod([2, 18, z_knee - 35], [2, 13, z_knee - 180], calf - 8, 16.0), 20.0),
        (rod([2, 3, z_ankle + 45], [2, 4, z_ankle + 5], 26.0, 24.0), 14.0),
    ]
    leg += sheath([tibia_marks["medial_malleolus"]], 10.0, pad_mm=4.0)
    fib = tibia_marks["fibula"]
    leg += sheath([fib], 16.0, pad_mm=rng.uniform(3.5, 5.0))  # and the peroneal muscles
    leg += [(rod(fib.b + [0, 0, 20], fib.b, 12.0, 12.0), 10.0)]
    heel = [
        (rod([3, 10, z_ankle], [3, 36, z_ankle - 50], 22.0, rng.uniform(27.0, 30.0)), 14.0),
        (rod([-8, 5, z_ankle - 36], [-14, -140, z_ankle - 58], 27.0, 16.0), 14.0),
        (rod([14, 10, z_ankle - 50], [24, -140, z_ankle - 62], 20.0, 12.0), 14.0),
    ]
    heel += sheath(metatarsals + midfoot, 12.0, pad_mm=rng.uniform(5.0, 8.0))
    heel += sheath(calcaneus, 12.0, pad_mm=rng.uniform(9.0, 12.0))
    return knee, front, leg, heel


def _lower_limb(rng, z_knee, z_ankle, knee_deg, ankle_deg, offset=(0.0, 0.0, 0.0)):
    """Bones and skin of a left leg from the distal femur to the midfoot.

    Args:
        z_knee: height of the tibial plateau, mm.
        z_ankle: height of the tibial plafond, mm (below z_knee by the tibia's length).
        knee_deg: knee flexion (the leg swings back, +y), degrees.
        ankle_deg: plantarflexion (toes down; negative: dorsiflexion), degrees.
        offset: shift of everything, mm.

    Returns:
        (bones, envelope).
    """
    knee_gap = rng.uniform(4.0, 6.0)
    femur, patella, knee_centre = _femur_patella(rng, z_knee, knee_gap)
    tibia, fibula, marks = _tibia_fibula(rng, z_knee, z_ankle)
    foot, ankle_centre = _foot(rng, z_ankle, rng.uniform(2.5, 3.5))
    knee_env, front, leg_env, foot_env = _envelope(rng, z_knee, z_ankle, patella, marks, foot)
    plantar = rotation_x(ankle_deg)
    foot = turned(foot, plantar, ankle_centre)
    foot_env = turned(foot_env, plantar, ankle_centre)
    bend = rotation_x(knee_deg)
    below = turned([tibia, fibula, *foot], bend, knee_centre, offset)
    below_env = turned(leg_env + foot_env, bend, knee_centre, offset)
    glide = rotation_x(0.6 * knee_deg)  # the patella slides down the trochlea
    patella = turned([patella], glide, knee_centre, offset)
    front = turned(front, glide, knee_centre, offset)
    above = turned([femur], np.eye(3), offset=offset)
    knee_env = turned(knee_env, np.eye(3), offset=offset)
    return above + patella + below, knee_env + front + below_env


def knee(rng: np.random.Generator) -> Limb:
    """Distal femur, patella, proximal tibia and fibula, the knee flexed 0-40 deg."""
    flexion = float(rng.uniform(0.0, 40.0))
    z_knee = rng.uniform(-20.0, 5.0) + 0.3 * flexion
    length = rng.uniform(300.0, 350.0)
    back = [0.0, rng.uniform(-6.0, 2.0) - 0.5 * flexion, 0.0]
    bones, envelope = _lower_limb(rng, z_knee, z_knee - length, flexion, 0.0, back)
    return soft(rng, bones, envelope, fat=(4.0, 10.0), pose={"flexion_deg": flexion})


def leg(rng: np.random.Generator) -> Limb:
    """Tibia and fibula shafts: a stretch of the leg between 22 % and 78 % of the tibia (the
    knee or the ankle may reach into the field of view)."""
    length = rng.uniform(300.0, 350.0)
    z_knee = rng.uniform(0.22, 0.78) * length
    ankle = float(rng.uniform(-10.0, 20.0))
    bones, envelope = _lower_limb(rng, z_knee, z_knee - length, 0.0, ankle)
    return soft(rng, bones, envelope, fat=(3.0, 9.0), pose={"ankle_deg": ankle})


def foot(rng: np.random.Generator) -> Limb:
    """Distal tibia and fibula, talus, calcaneus, navicular, cuboid, cuneiforms and the
    metatarsal bases; the ankle plantarflexed -15 (dorsiflexion) to +30 deg. The framing
    slides between the whole heel and more of the midfoot."""
    ankle = float(rng.uniform(-15.0, 30.0))
    z_ankle = rng.uniform(0.0, 25.0)
    length = rng.uniform(300.0, 350.0)
    shift = [0.0, rng.uniform(-5.0, 20.0), 0.0]
    bones, envelope = _lower_limb(rng, z_ankle + length, z_ankle, 0.0, ankle, shift)
    return soft(rng, bones, envelope, fat=(3.0, 8.0), pose={"ankle_deg": ankle})
