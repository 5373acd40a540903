"""`project`: cone-beam DRRs (line integrals) of a volume with Joseph's method."""

from __future__ import annotations

import math

import numpy as np

from drrgen.geometry.view import View
from drrgen.projector import kernels
from drrgen.projector.rays import setup_rays
from drrgen.projector.torch_joseph import parse_device, project_torch
from drrgen.runtime import numba_threads
from drrgen.volume.volume import LAYOUT_SLACK, Volume


def project(
    volume: Volume, view: View, threads: int | None = None, device: str | None = None
) -> np.ndarray:
    """Line integrals of `volume` along the rays from the source to every pixel centre.

    Args:
        volume: values per voxel, typically mu in 1/mm from `Volume.to_mu`. A crop made with
            `Volume.crop` is projected without copying: voxels outside the crop count as zero.
            Values >= 0 are read as 16-bit steps of the (root) volume's maximum / 65535, each
            within half a step (root max / 131070) of its value: a sample moves by at most
            that, a line integral by at most that per mm of the ray, and far less in practice
            (under 5e-6 of the image's maximum on a chest CT). `kernels.PRECISION` says when;
            DRRGEN_PRECISION=float32 reads the values as given.
        view: the cone-beam geometry, in the volume's physical frame (LPS, mm).
        threads: Numba threads (default: Numba's current setting). Results are bitwise
            identical for any thread count.
        device: None or "cpu": the Numba CPU projector. "cuda", "cuda:N" (any torch device)
            or "torch:<dev>" (e.g. "torch:cpu"): the torch projector there
            (`drrgen.projector.torch_joseph`), which reads the same values and agrees with
            the Numba one to float32 rounding (<= 1e-5 of the image's maximum) and is
            bitwise repeatable per device.

    Returns:
        (H, W) float32 line integrals in units of value x mm (dimensionless for mu in 1/mm),
        indexed [row, col] as `View` defines them. Outside the volume values are zero; in-slice
        interpolation ramps to zero over one voxel beyond the edge (zero-padded borders).

    Raises:
        DeviceError (a UserError): torch missing, unknown device, or CUDA not available.
        ValueError: the (root) volume is too large for 32-bit indices: its projector layout
            would hold 2**31 entries or more (8 GiB of float32).
    """
    torch_device = parse_device(device)
    if torch_device is not None:
        return project_torch(volume, view, torch_device, threads)
    root = volume.root[0]
    h, w = view.shape
    slices_inner = kernels.slices_inner()
    scale = kernels.value_scale(root)
    for m in range(3):  # the kernels index the layouts with int32
        if np.prod(root.axis_major_shape(m, slices_inner)) + LAYOUT_SLACK >= 2**31:
            name = volume.source or "volume"
            raise ValueError(f"{name}: too large to project ({root.shape_ijk} voxels)")
    with numba_threads(threads):
        rays = setup_rays(volume, view)
        axis, a0, da, b0, db, kmin, kmax, kin0, kin1, step_mm = rays.params
        du, dv, lo, hi = rays.du, rays.dv, rays.lo, rays.hi
        out = np.zeros(h * w, np.float32)
        for m in range(3):
            a, b = [c for c in range(3) if c != m]
            # Lanes of a group run along the detector direction that moves along axis a.
            lanes, tile_ptr = kernels.group_rays(
                axis,
                kmin,
                kmax,
                a0,
                da,
                b0,
                db,
                h,
                w,
                m,
                abs(du[a]) >= abs(dv[a]),
                math.inf if slices_inner else kernels.PLANE_SPREAD,
            )
            if lanes.shape[0] == 0:
                continue
            kernels.joseph_groups(
                root.axis_major_buffer(m, slices_inner, scale),
                np.array(root.axis_major_shape(m, slices_inner), np.int64),
                tile_ptr,
                lanes,
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
                kernels.ROW_LOADS,
                slices_inner,
                np.float32(1.0 if scale is None else scale),
            )
    return out.reshape(h, w)


__all__ = ["project"]
