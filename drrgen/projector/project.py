"""`project`: cone-beam DRRs (line integrals) of a volume with Joseph's method."""

from __future__ import annotations

import functools

import numpy as np

from drrgen.geometry.view import View
from drrgen.projector import kernels
from drrgen.runtime import numba_threads
from drrgen.volume.volume import Volume


@functools.lru_cache(maxsize=8)
def _tile_order(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ids of an (h, w) detector grouped in TILE x TILE tiles, and each pixel's tile."""
    t = kernels.TILE
    rows, cols = np.divmod(np.arange(h * w, dtype=np.int64), w)
    tile_of = (rows // t) * ((w + t - 1) // t) + cols // t
    order = np.argsort(tile_of, kind="stable")
    order.flags.writeable = False
    tile_of.flags.writeable = False
    return order, tile_of


def _tile_ptr(tiles: np.ndarray) -> np.ndarray:
    """(n_tiles + 1,) int64 start offsets of the runs of equal values in sorted `tiles`."""
    starts = np.flatnonzero(np.diff(tiles)) + 1
    return np.concatenate([[0], starts, [tiles.size]]).astype(np.int64)


def project(volume: Volume, view: View, threads: int | None = None) -> np.ndarray:
    """Line integrals of `volume` along the rays from the source to every pixel centre.

    Args:
        volume: values per voxel, typically mu in 1/mm from `Volume.to_mu`. A crop made with
            `Volume.crop` is projected without copying: voxels outside the crop count as zero.
        view: the cone-beam geometry, in the volume's physical frame (LPS, mm).
        threads: Numba threads (default: Numba's current setting). Results are bitwise
            identical for any thread count.

    Returns:
        (H, W) float32 line integrals in units of value x mm (dimensionless for mu in 1/mm),
        indexed [row, col] as `View` defines them. Outside the volume values are zero; in-slice
        interpolation ramps to zero over one voxel beyond the edge (zero-padded borders).
    """
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
        axis, a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm = kernels.ray_setup(
            src, det, du, dv, h, w, lo, hi, np.ascontiguousarray(root.affine[:3, :3])
        )
        out = np.zeros(h * w, np.float32)
        order, tile_of = _tile_order(h, w)
        # Rays that miss the crop keep their 0 and cost nothing more (often half of them).
        hits = order[kmin[order] <= kmax[order]]  # tile order kept
        hit_axis = axis[hits]
        for m in range(3):
            rays = hits[hit_axis == m]
            if rays.size == 0:
                continue
            tile_ptr = _tile_ptr(tile_of[rays])
            a, b = [c for c in range(3) if c != m]
            kernels.joseph_rays(
                root.axis_major(m),
                tile_ptr,
                rays,
                a0,
                da,
                b0,
                db,
                kmin,
                kmax,
                kin0,
                kin1,
                step_mm,
                lo[a],
                hi[a],
                lo[b],
                hi[b],
                out,
                np.empty(tile_ptr.size - 1, np.float32),
            )
    return out.reshape(h, w)


__all__ = ["project"]
