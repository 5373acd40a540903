"""Correspondence speed: ms per view pair (256x256 views, patch 16) from a 256^3 HU phantom.

Run: ``.venv/bin/python benchmarks/bench_correspondence.py [--threads 1 2] [--size 256]``

Rows, per thread count (medians over repeats; rows of one group interleaved so they see the
same machine load):
  * ``per pair, grid cached``: a 2-view `correspondence` call on a volume whose coarse grid
    is already cached: footprints of both views + the pair's max-accumulation.
  * ``per pair, 4 views, cached``: a 4-view call (6 pairs) on the cached grid, divided by 6.
  * ``coarse pass (once per CT)``: the block means over the whole 256^3 volume.
  * ``call, 2 views, fresh CT``: a 2-view call on a fresh volume (coarse pass included).
  * ``read volume once``: np.max over the data, the memory-bound floor of the coarse pass.
  * ``brute force (extrapolated)``: one `project` call per non-air coarse voxel and view (the
    authors' method, with our projector): a sample of calls is timed and EXTRAPOLATED to all
    non-air coarse voxels x 2 views. It needs the same coarse pass, so
    ``speed-up per pair`` = brute force / per pair (both without the coarse pass) and
    ``speed-up per call`` = (coarse pass + brute force) / call, 2 views, fresh CT.

``--accuracy`` instead runs the acceptance checks of `drrgen.correspondence.checks` on four
256^3 phantoms (rotated, anisotropic) with 4 random C-arm views each (the paper's pose
distribution; pixels sized so ~170 mm fill the detector) and prints the shares of misses.
``--fraction`` overrides the coarse voxel width (share of the iso patch width) to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from drrgen.correspondence import checks, correspondence
from drrgen.correspondence import ground_truth as gt
from drrgen.correspondence.coarse import coarse_factors, coarse_volume
from drrgen.geometry import carm_view
from drrgen.phantoms import make_phantom
from drrgen.projector import project
from drrgen.runtime import numba_threads
from drrgen.volume import Volume

PATCH = 16
ANGLES = [(0, 180), (90, 175), (30, 190), (200, 170)]  # (primary, secondary) deg


def make_views(volume: Volume, n: int, size: int) -> list:
    """`n` oblique C-arm views, size x size pixels of 1.2 mm (at 256: the 160 mm phantom fills
    the detector), SID 1000-1090 mm, SDD about 1.9 SID, isocenter at the volume centre."""
    return [
        carm_view(
            p, s, source_to_isocenter_mm=1000 + 30 * i, source_to_detector_mm=1900 + 40 * i,
            pixel_mm=1.2 * 256 / size, shape=(size, size), isocenter=volume.center,
        )
        for i, (p, s) in enumerate(ANGLES[:n])
    ]  # fmt: skip


def fresh(volume: Volume) -> Volume:
    """The same data and affine with an empty cache (no copy of the data)."""
    return Volume(volume.data, volume.affine, volume.source)


def median_ms(fns: dict, repeats: int) -> dict:
    """Median wall time (ms) of each callable, interleaved so all see the same machine load."""
    for fn in fns.values():
        fn()  # warm-up: compilation, caches
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}


def brute_force_ms(volume: Volume, views: list, threads: int, sample: int) -> tuple[float, int]:
    """Extrapolated ms of one `project` call per non-air coarse voxel and view; (ms, voxels)."""
    grid = coarse_volume(volume, coarse_factors(volume, views, PATCH))
    voxels = np.argwhere(grid.data > 0)
    pick = voxels[np.random.default_rng(0).choice(len(voxels), min(sample, len(voxels)), False)]
    coarse_views = [v.downsample(PATCH) for v in views]

    def one_call(idx, view):
        one = np.zeros_like(grid.data)
        one[tuple(idx)] = grid.data[tuple(idx)]
        project(Volume(one, grid.affine), view, threads=threads)

    for view in coarse_views:
        one_call(pick[0], view)  # warm-up
    t = time.perf_counter()
    for n, idx in enumerate(pick):
        one_call(idx, coarse_views[n % len(coarse_views)])
    per_call = (time.perf_counter() - t) / len(pick)
    return per_call * len(voxels) * len(views) * 1e3, len(voxels)


def rotated(volume: Volume, deg=(25.0, 10.0)) -> Volume:
    """The volume turned about its centre (about z, then x): a grid with direction cosines."""
    a, b = np.deg2rad(deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    turn = np.eye(4)
    turn[:3, :3] = rx @ rz
    turn[:3, 3] = volume.center - turn[:3, :3] @ volume.center
    return Volume(volume.data, turn @ volume.affine, volume.source)


def accuracy(n: int, size: int, fraction: float | None) -> None:
    """Print the acceptance checks' miss shares over 4 phantoms x 6 view pairs."""
    if fraction is not None:
        default = gt.coarse_factors
        gt.coarse_factors = lambda v, w, p: default(v, w, p, fraction=fraction)
    rng = np.random.default_rng(11)
    misses, unsupported = [], []
    for seed, kind in [(0, "forearm"), (1, "hand"), (2, "forearm"), (3, "hand")]:
        spacing = np.array([0.55, 0.6, 0.7]) * 256 / n
        vol = rotated(make_phantom(seed, shape=(n, n, n), spacing_mm=spacing, kind=kind))
        views = []
        for _ in range(4):
            primary = rng.choice([0, 90, 180, 270], p=[0.4, 0.3, 0.2, 0.1]) + rng.normal(0, 15)
            secondary, sid, idd = 180 + rng.normal(0, 15), *rng.uniform([1000, 800], [1100, 1200])
            views.append(
                carm_view(
                    primary, secondary, source_to_isocenter_mm=sid,
                    source_to_detector_mm=sid + idd, pixel_mm=170 * (sid + idd) / sid / size,
                    shape=(size, size), isocenter=vol.center + rng.normal(0, 5, 3),
                )
            )  # fmt: skip
        c = correspondence(vol, views)
        pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
        for p, (i, j) in enumerate(pairs):
            misses.append(checks.bone_miss_fraction(vol, views[i], views[j], c[p], PATCH))
            unsupported.append(checks.unsupported_fraction(vol, views[i], views[j], c[p], PATCH))
        print(
            f"{kind} seed {seed}: bone points with C < 0.01: "
            + " ".join(f"{x:.3f}" for x in misses[-6:])
            + " | entries C >= 0.05 without tissue: "
            + " ".join(f"{x:.3f}" for x in unsupported[-6:])
        )
    print(
        f"over {len(misses)} pairs: bone misses mean {np.mean(misses):.4f} max "
        f"{np.max(misses):.4f}; unsupported entries mean {np.mean(unsupported):.4f} max "
        f"{np.max(unsupported):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=256, help="detector pixels per side")
    parser.add_argument("--volume", type=int, default=256, help="phantom voxels per side")
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--sample", type=int, default=400, help="brute-force calls timed")
    parser.add_argument("--accuracy", action="store_true", help="run the acceptance checks")
    parser.add_argument("--fraction", type=float, default=None, help="coarse voxel / patch")
    args = parser.parse_args()
    if args.accuracy:
        accuracy(args.volume, args.size, args.fraction)
        return

    n = args.volume
    volume = make_phantom(0, shape=(n, n, n), spacing_mm=(160.0 / n,) * 3, kind="forearm")
    views2, views4 = make_views(volume, 2, args.size), make_views(volume, 4, args.size)
    cached = fresh(volume)
    f = coarse_factors(volume, views2, PATCH)
    grid = coarse_volume(volume, f)
    print(
        f"volume {volume.data.shape} HU ({volume.data.nbytes / 2**20:.0f} MiB), views "
        f"{args.size}x{args.size}, patch {PATCH}, coarse factors {f.tolist()} -> grid "
        f"{grid.data.shape} with {np.count_nonzero(grid.data)} non-air voxels"
    )
    rows: dict[str, list[float]] = {}
    for threads in args.threads:

        def call(vol, views, t=threads):
            return lambda: correspondence(vol() if callable(vol) else vol, views, threads=t)

        with numba_threads(threads):
            # Two groups: the 64 MiB sweeps of the second would evict the first's caches.
            ms = median_ms(
                {
                    "per pair, grid cached": call(cached, views2),
                    "per pair, 4 views, cached": call(cached, views4),
                },
                args.repeats,
            )
            ms |= median_ms(
                {
                    "coarse pass (once per CT)": lambda: coarse_volume(volume, f),
                    "call, 2 views, fresh CT": call(lambda: fresh(volume), views2),
                    "read volume once": lambda: volume.data.max(),
                },
                args.repeats,
            )
        ms["per pair, 4 views, cached"] /= 6
        brute, n_vox = brute_force_ms(volume, views2, threads, args.sample)
        ms["brute force (extrapolated)"] = brute
        ms["speed-up per pair"] = brute / ms["per pair, grid cached"]
        coarse = ms["coarse pass (once per CT)"]
        ms["speed-up per call"] = (coarse + brute) / ms["call, 2 views, fresh CT"]
        for name, value in ms.items():
            rows.setdefault(name, []).append(value)
    print(f"{'':28s}" + "".join(f"{f'{t} thread(s)':>14s}" for t in args.threads))
    for name, values in rows.items():
        unit = "x" if name.startswith("speed-up") else " ms"
        print(f"{name:28s}" + "".join(f"{v:>11.{1 if v >= 100 else 2}f}{unit:3s}" for v in values))
    print(
        f"brute force = (mean of {args.sample} timed one-voxel `project` calls on the coarse "
        f"grid, patch detector) x {n_vox} non-air coarse voxels x 2 views; extrapolated."
    )


if __name__ == "__main__":
    main()
