"""C-arm-like constructors for `View`, so nobody assembles detector vectors by hand.

Frame: the CT's physical frame, LPS (x -> patient Left, y -> Posterior, z -> Superior), mm.

At ``primary_deg = secondary_deg = 0`` the view is an AP projection: the source is anterior
(-y) of the isocenter, the beam runs towards +y, and the image is shown as radiographs are
read, patient facing the viewer: image rows run from superior (row 0) to inferior
(``v`` along -z) and columns from the patient's right to the patient's left (``u`` along +x).
``u x v`` always points from the source towards the detector.

The primary angle rotates the C-arm about the patient's superior axis (+z, right-handed):
90 deg puts the source on the patient's left (beam towards the patient's right, a lateral
view), 180 deg gives a PA view. The secondary angle then tilts the beam about the rotated
column axis ``u`` (cranio-caudal tilt): positive values move the source towards the feet.
"""

from __future__ import annotations

import numpy as np

from drrgen.geometry.view import View

# (beam direction, u, v) at primary = secondary = 0.
_BEAM0 = np.array([0.0, 1.0, 0.0])
_U0 = np.array([1.0, 0.0, 0.0])
_V0 = np.array([0.0, 0.0, -1.0])


def rotation_matrix(axis: np.ndarray, deg: float) -> np.ndarray:
    """(3, 3) right-handed rotation by `deg` degrees about unit `axis` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    t = np.deg2rad(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def carm_view(
    primary_deg: float = 0.0,
    secondary_deg: float = 0.0,
    *,
    source_to_isocenter_mm: float = 1000.0,
    source_to_detector_mm: float = 1500.0,
    pixel_mm: float | tuple[float, float] = 1.0,
    shape: tuple[int, int] = (256, 256),
    isocenter=(0.0, 0.0, 0.0),
    in_plane_deg: float = 0.0,
) -> View:
    """A view of a C-arm rotated about `isocenter`.

    Args:
        primary_deg: rotation about the patient's superior axis (LPS +z), degrees.
        secondary_deg: cranio-caudal tilt about the rotated column axis, degrees.
        source_to_isocenter_mm: distance from source to isocenter, mm.
        source_to_detector_mm: distance from source to detector plane, mm (> SID).
        pixel_mm: detector pixel pitch (row, col) in mm, or one number for square pixels.
        shape: detector size (H, W) in pixels.
        isocenter: (3,) LPS mm point the central ray passes through.
        in_plane_deg: rotation of the detector about the central ray, degrees.

    Returns:
        The `View`; the central ray hits the detector centre.
    """
    if source_to_detector_mm <= source_to_isocenter_mm:
        raise ValueError("source_to_detector_mm must exceed source_to_isocenter_mm")
    pr, pc = (pixel_mm, pixel_mm) if np.isscalar(pixel_mm) else pixel_mm
    r1 = rotation_matrix(np.array([0.0, 0.0, 1.0]), primary_deg)
    u1 = r1 @ _U0
    r = rotation_matrix(u1, secondary_deg) @ r1
    beam, u, v = r @ _BEAM0, r @ _U0, r @ _V0
    if in_plane_deg:
        r_ip = rotation_matrix(beam, in_plane_deg)
        u, v = r_ip @ u, r_ip @ v
    iso = np.asarray(isocenter, dtype=np.float64)
    source = iso - source_to_isocenter_mm * beam
    detector = source + source_to_detector_mm * beam
    return View(source, detector, float(pc) * u, float(pr) * v, shape)
