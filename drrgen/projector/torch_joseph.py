"""Joseph cone-beam projector in PyTorch: the same DRRs as the Numba path, on any torch device.

Geometry and conventions are those of `drrgen.project` (see `kernels`): in root index space
each ray steps one slice at a time along its dominant index axis m, interpolates bilinearly
inside the slice (zero-padded borders: a one-voxel ramp to zero beyond the box) and the sum
times the mm length of one slice step is the line integral.

Per-ray parameters come from the Numba `kernels.ray_setup` (on the CPU, ~1 ms for 256x256):
one definition of the slice ranges, dominant axes and step lengths serves both paths, and
both read the same values (the 16-bit steps of `kernels.value_scale` where the Numba path
uses them, as float32 here), so the two can only differ in the float32 rounding of the
samples and of their sum. Here all rays of one dominant axis are stepped together: a step
gathers the samples of a chunk of slices for a batch of rays at once, (rays, slices)
tensors, and adds their sum to each ray's total in slice-chunk order. Chunks and batches
are a function of the detector and volume only, and torch's reductions are deterministic
for a given device and shape, so repeated calls give bitwise identical DRRs on one device;
across devices (and against Numba) they agree to float32 rounding (1e-6 relative measured;
the tests ask for 1e-5).

The crop a view sees (`Volume.crop`) is copied onto the device with a zero border (one voxel
in front, two behind on each axis), so voxels outside the crop read as zero without masks:
the clamped coordinate of a sample beyond the one-voxel ramp lands on the border.
"""

from __future__ import annotations

import numpy as np

from drrgen.errors import DeviceError
from drrgen.geometry.view import View
from drrgen.projector.kernels import value_scale
from drrgen.projector.rays import setup_rays
from drrgen.volume.volume import Volume, counts_of

# Samples gathered per step (rays x slices). Each sample costs ~80 bytes of temporaries, so a
# step holds ~0.3 GB: large enough that kernel launches (~30 per step) do not dominate on a
# GPU, small enough for any GPU and for the CPU.
SAMPLES_PER_STEP = 1 << 22
# At most this many rays per batch (a 256x256 detector in one).
RAY_BATCH = 1 << 16


def parse_device(device) -> str | None:
    """The torch device a `device` option names, or None for the Numba CPU path.

    Args:
        device: None or "cpu": the Numba CPU projector (the default, fastest on a CPU).
            "torch:<dev>": the torch projector on torch device <dev> ("torch:cpu" runs the
            torch code on the CPU, for tests). Any other string is a torch device ("cuda",
            "cuda:1"), which runs the torch projector there. A `torch.device` also works.

    Returns:
        The torch device string, or None for Numba.

    Raises:
        DeviceError: torch is not installed, the string is not a torch device, or CUDA is
            asked for and not available (no GPU, or a torch built without CUDA).
    """
    if device is None:
        return None
    text = str(device).strip()
    if text == "cpu":
        return None
    name = text.removeprefix("torch:")
    try:
        import torch
    except ImportError:
        raise DeviceError(
            f"device {text}: the torch projector needs PyTorch (pip install torch)"
        ) from None
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device {text}: not a torch device (use cpu, torch:cpu, cuda or cuda:N)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU visible" if torch.version.cuda else "torch was built without CUDA"
            raise DeviceError(f"device {text}: CUDA is not available ({why})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {text}: no such GPU ({torch.cuda.device_count()} visible)")
    return str(dev)


def ray_parameters(volume: Volume, view: View, threads: int | None = None) -> dict:
    """Per-ray Joseph parameters of `view` on `volume`'s root grid (Numba `ray_setup`).

    Returns:
        dict of (h * w,) numpy arrays from `kernels.ray_setup` (axis, a0, da, b0, db, kmin,
        kmax, step_mm; see there) and lo, hi: (3,) int64 (i, j, k) box of the crop in the root.
    """
    rays = setup_rays(volume, view, threads)
    axis, a0, da, b0, db, kmin, kmax, _, _, step_mm = rays.params
    lo, hi = rays.lo, rays.hi
    names = ("axis", "a0", "da", "b0", "db", "kmin", "kmax", "step_mm")
    out = dict(zip(names, (axis, a0, da, b0, db, kmin, kmax, step_mm), strict=True))
    out.update(lo=lo, hi=hi)
    return out


def padded_crop(volume: Volume, device: str):
    """The crop's voxels on `device`, zero-bordered: (nk + 3, nj + 3, ni + 3) float32 [k, j, i].

    Voxel (i, j, k) of the crop sits at [k + 1, j + 1, i + 1]. The root volume is uploaded
    once per device and cached on it (`Volume.memo`), so the crops of one CT share one copy
    and only the crop is copied per call. Its values are those the Numba kernels read: the
    16-bit steps of `kernels.value_scale` as float32 where that applies.
    """
    import torch
    import torch.nn.functional as F

    root, offset = volume.root
    scale = value_scale(root)  # the values the Numba kernels read: the same 16-bit steps

    def upload():
        if scale is None:
            return torch.from_numpy(root.data).to(device)
        values = np.empty(root.data.shape, np.float32)
        for k in range(root.data.shape[0]):  # a slice at a time: small float64 temporaries
            values[k] = counts_of(root.data[k], scale) * scale
        return torch.from_numpy(values).to(device)

    data = root.memo(("torch", device, scale), upload)
    (i0, j0, k0), (ni, nj, nk) = offset, volume.shape_ijk
    crop = data[k0 : k0 + nk, j0 : j0 + nj, i0 : i0 + ni]
    return F.pad(crop, (1, 2, 1, 2, 1, 2))


def _chunk_sum(flat, strides, rays, k0: int, n_k: int, box):
    """Sum of the samples on slices [k0, k0 + n_k) of a batch of rays, per ray.

    Args:
        flat: the flattened `padded_crop`.
        strides: (3,) its strides along index axes (m, a, b) of this batch.
        rays: (n,) tensors a0p, da, b0p, db (float32, padded root coordinates: index + 1) and
            kmin, kmax (int64 root slice numbers) on the device.
        k0, n_k: the chunk, in root slice numbers.
        box: (lo_m, lo_a, lo_b, n_a, n_b): the crop's origin in the root and its size along a, b.

    Returns:
        (n,) float32 sums over the chunk's slices in [kmin, kmax], in units of value.
    """
    import torch

    a0p, da, b0p, db, kmin, kmax = rays
    lo_m, lo_a, lo_b, n_a, n_b = box
    st_m, st_a, st_b = strides
    k = torch.arange(k0, k0 + n_k, device=flat.device)
    kf = k.to(torch.float32)
    # Same float32 coordinate as the Numba kernel, shifted to the crop's padded frame (an
    # exact subtraction of an integer), clamped into the zero border beyond the ramp.
    pa = torch.addcmul(a0p[:, None], kf, da[:, None]).sub_(lo_a).clamp_(0, n_a + 1)
    pb = torch.addcmul(b0p[:, None], kf, db[:, None]).sub_(lo_b).clamp_(0, n_b + 1)
    ia, ib = pa.floor(), pb.floor()
    fa, fb = pa - ia, pb - ib
    # Slices outside a ray's [kmin, kmax] read the zero slice 0 of the border.
    on = (k >= kmin[:, None]) & (k <= kmax[:, None])
    km = torch.where(on, k - (lo_m - 1), 0)
    p = km * st_m + ia.long() * st_a + ib.long() * st_b
    f00, f01 = flat[p], flat[p + st_a]
    f10, f11 = flat[p + st_b], flat[p + (st_a + st_b)]
    v0 = torch.lerp(f00, f01, fa)
    v1 = torch.lerp(f10, f11, fa)
    return torch.lerp(v0, v1, fb).sum(dim=1)


def _project_axis(flat, strides, rays, box) -> object:
    """Line integrals (without the step length) of rays sharing dominant axis m.

    Args:
        flat, strides, box: as in `_chunk_sum`.
        rays: (n,) tensors as in `_chunk_sum`.

    Returns:
        (n,) float32 sums of each ray's samples, added chunk by chunk in slice order.
    """
    import torch

    a0p, da, b0p, db, kmin, kmax = rays
    acc = torch.zeros(a0p.shape[0], dtype=torch.float32, device=flat.device)
    first, stop = int(kmin.min()), int(kmax.max()) + 1
    for r0 in range(0, a0p.shape[0], RAY_BATCH):
        part = tuple(x[r0 : r0 + RAY_BATCH] for x in rays)
        n = part[0].shape[0]
        n_k = 1 << max(0, (SAMPLES_PER_STEP // n).bit_length() - 1)  # a power of 2
        for k0 in range(first, stop, n_k):
            acc[r0 : r0 + n] += _chunk_sum(flat, strides, part, k0, min(n_k, stop - k0), box)
    return acc


def project_torch(volume: Volume, view: View, device: str, threads: int | None = None):
    """`drrgen.project` with the torch projector on `device` (see `parse_device`).

    Args:
        volume: values per voxel (mu in 1/mm); crops count outside voxels as zero.
        view: the cone-beam geometry in the volume's physical frame (LPS, mm).
        device: a torch device string ("cuda", "cuda:0", "cpu").
        threads: Numba threads of the per-ray set-up (CPU).

    Returns:
        (H, W) float32 numpy line integrals, as `drrgen.project`.
    """
    import torch

    prm = ray_parameters(volume, view, threads)
    h, w = view.shape
    padded = padded_crop(volume, device)
    flat = padded.reshape(-1)
    n_k, n_j, n_i = padded.shape
    stride = (1, n_i, n_i * n_j)  # along index axes i, j, k of the padded crop
    lo, hi = prm["lo"], prm["hi"]
    out = torch.zeros(h * w, dtype=torch.float32, device=device)
    hit = prm["kmin"] <= prm["kmax"]
    for m in range(3):
        ids = np.flatnonzero((prm["axis"] == m) & hit)
        if ids.size == 0:
            continue
        a, b = [c for c in range(3) if c != m]

        def up(x, ids=ids):
            return torch.from_numpy(np.ascontiguousarray(x[ids])).to(device)

        # Padded root coordinates (index + 1), as the Numba kernel's lane states.
        rays = (
            up(prm["a0"] + np.float32(1)),
            up(prm["da"]),
            up(prm["b0"] + np.float32(1)),
            up(prm["db"]),
            up(prm["kmin"].astype(np.int64)),
            up(prm["kmax"].astype(np.int64)),
        )
        box = (int(lo[m]), int(lo[a]), int(lo[b]), int(hi[a] - lo[a]), int(hi[b] - lo[b]))
        acc = _project_axis(flat, (stride[m], stride[a], stride[b]), rays, box)
        ids_t = torch.from_numpy(ids).to(device)
        out[ids_t] = acc * up(prm["step_mm"])
    return out.reshape(h, w).cpu().numpy()


__all__ = ["DeviceError", "parse_device", "project_torch", "ray_parameters"]
