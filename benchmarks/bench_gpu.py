"""GPU DRR speed: DRRs/s of the torch projector on a GPU, beside the Numba CPU path.

Run: ``.venv/bin/python benchmarks/bench_gpu.py [--repeats 7] [--device cuda]``. Exits with a
message (status 0) when no CUDA GPU is visible. ``--device torch:cpu`` times the torch code
on the CPU instead (a check of the script, and the torch-on-CPU figure in the README).

For 200x200 and 256x256 detectors from a 256^3 float32 volume (1 mm voxels, smooth blobs, as
`bench_projector.py`), over 4 C-arm views: DRRs/s of `drrgen.project(..., device=...)` end to
end (per-ray set-up on the CPU, sampling on the device, the image back in host memory), after
a warm-up and with `torch.cuda.synchronize`, median over repeats; the Numba path with all
cores in the same run; the largest relative difference of the two (max |diff| / max); the
GPU's peak memory. Then the best published GPU figure we know, for scale: nanodrr, about
14,500 DRRs/s at 200x200 with Triton on an RTX 6000 Ada (reported by its authors, not
measured here; another GPU and a batched renderer, so read it as an order of magnitude).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from bench_projector import make_volume
from timing import machine

from drrgen.geometry import carm_view
from drrgen.projector import project

NANODRR_DRRS_PER_S = 14_500  # 200x200, Triton, RTX 6000 Ada: reported, not measured here
ANGLES = [(0, 0), (30, 10), (90, 0), (135, 20)]


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    import torch

    if device.removeprefix("torch:").startswith("cuda"):
        torch.cuda.synchronize()


def drrs_per_s(render, views, device: str | None, repeats: int) -> float:
    """Median DRRs/s of `render(view)` over `repeats` passes through `views`, after a warm-up."""
    for view in views:
        render(view)  # compilation, uploads, allocator caches
    if device:
        sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for view in views:
            render(view)
        if device:
            sync(device)
        times.append(time.perf_counter() - t)
    return len(views) / float(np.median(times))


def describe(device: str) -> str:
    """One line naming the torch device, torch and CUDA versions."""
    import torch

    name = "CPU"
    if device.removeprefix("torch:").startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device.removeprefix("torch:")))
    return f"device: {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n", type=int, default=256, help="volume size n^3")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Numba threads")
    args = parser.parse_args()
    import torch

    from drrgen.projector.torch_joseph import DeviceError, parse_device

    try:
        parse_device(args.device)
    except DeviceError as exc:
        print(f"no GPU here, nothing measured: {exc}")
        return
    on_gpu = args.device.removeprefix("torch:").startswith("cuda")
    print(machine())
    print(describe(args.device))
    vol = make_volume(args.n)
    results = {}
    for size in (200, 256):
        views = [
            carm_view(*a, source_to_isocenter_mm=600, source_to_detector_mm=1000,
                      pixel_mm=1.6 * 256 / size, shape=(size, size))
            for a in ANGLES
        ]  # fmt: skip
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        gpu = drrs_per_s(lambda v: project(vol, v, device=args.device), views, args.device,
                         args.repeats)  # fmt: skip
        cpu = drrs_per_s(lambda v: project(vol, v, threads=args.threads), views, None,
                         args.repeats)  # fmt: skip
        diff = max(
            float(np.abs(a - b).max() / np.abs(b).max())
            for a, b in ((project(vol, v, device=args.device), project(vol, v)) for v in views)
        )
        peak = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else float("nan")
        results[size] = gpu
        print(
            f"{size}x{size} from {args.n}^3: torch on {args.device} {gpu:,.4g} DRRs/s "
            f"({1e3 / gpu:.4g} ms each), Numba CPU ({args.threads} threads) {cpu:,.4g} DRRs/s "
            f"({1e3 / cpu:.4g} ms), torch / Numba {gpu / cpu:.3g}x; "
            f"max relative difference {diff:.1e}; peak GPU memory {peak:,.0f} MiB"
        )
    print(
        f"nanodrr (reported, not measured here): about {NANODRR_DRRS_PER_S:,} DRRs/s at "
        f"200x200 with Triton on an RTX 6000 Ada; ours at 200x200 on {args.device}: "
        f"{results[200]:,.4g} DRRs/s ({results[200] / NANODRR_DRRS_PER_S:.2%} of it; other "
        "GPU, one view per call)"
    )


if __name__ == "__main__":
    sys.exit(main())
