"""A view's rays in the root volume's index space: the one geometry both projectors use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drrgen.geometry.view import View
from drrgen.projector import kernels
from drrgen.runtime import numba_threads
from drrgen.volume.volume import Volume


@dataclass(frozen=True)
class Rays:
    """`kernels.ray_setup` of a view on a (cropped) volume, with the geometry it came from.

    Attributes:
        du, dv: (3,) float64 detector column and row steps in root index units.
        lo, hi: (3,) int64 (i, j, k) box [lo, hi) of the crop in the root volume.
        params: the (h * w,) per-ray arrays of `kernels.ray_setup`, in its order (axis, a0,
            da, b0, db, kmin, kmax, kin0, kin1, step_mm).
    """

    du: np.ndarray
    dv: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    params: tuple


def setup_rays(volume: Volume, view: View, threads: int | None = None) -> Rays:
    """The per-ray Joseph parameters of `view` (LPS mm) on `volume`'s root index grid."""
    root, offset = volume.root
    inv = np.linalg.inv(root.affine)
    lin, shift = inv[:3, :3], inv[:3, 3]
    src = lin @ view.source + shift
    det = lin @ view.detector_center + shift
    du, dv = lin @ view.u, lin @ view.v
    lo = offset.astype(np.int64)
    hi = lo + np.array(volume.shape_ijk, dtype=np.int64)
    h, w = view.shape
    with numba_threads(threads):
        params = kernels.ray_setup(
            src, det, du, dv, h, w, lo, hi, np.ascontiguousarray(root.affine[:3, :3])
        )
    return Rays(du, dv, lo, hi, params)
