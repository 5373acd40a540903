"""Correspondence speed and accuracy: 256x256 views, patch 16, 256^3 HU phantoms.

Speed (default): ``.venv/bin/python benchmarks/bench_correspondence.py [--threads 1 2]``

Rows, per thread count (medians over repeats; rows of one group interleaved so they see the
same machine load; the default `fraction` and `supersample` unless given):
  * ``per pair, grid cached``: a 2-view `correspondence` call on a volume whose coarse grid
    is already cached: footprints of both views + the pair's max-accumulation.
  * ``per pair, 4 views, cached``: a 4-view call (6 pairs) on the cached grid, divided by 6.
  * ``coarse pass, whole CT``: the area means over the whole 256^3 volume.
  * ``coarse pass, crop``: the same over a strided crop of 3/4 of each axis (how the dataset
    builder calls it: ``hu.crop(start, stop)``, a fresh view per sample).
  * ``call, 2 views, fresh CT`` / ``fresh crop``: a 2-view call, coarse pass included.
  * ``read volume once``: np.max over the data, the memory-bound floor of the coarse pass.
  * ``brute force (extrapolated)``: one `project` call per non-air coarse voxel and view (the
    authors' method, with our projector) onto the sub-ray detector (`sub_ray_view`, 48 x 48 at
    s = 3), average-pooled: a sample of calls is timed and EXTRAPOLATED to all non-air coarse
    voxels x 2 views. It needs the same coarse pass, so ``speed-up per pair`` = brute force /
    per pair (both without the coarse pass) and ``speed-up per call`` = (coarse pass + brute
    force) / call, 2 views, fresh CT.

``--grid``: one-thread timings for every ``--fraction`` x ``--supersample``.

``--accuracy``: the acceptance checks of `drrgen.correspondence.checks` for every
``--fraction`` x ``--supersample``: shares of bone points (HU > ``--hu-bone``) whose patch
pair has C < 0.01 and of entries C >= 0.05 that no tissue voxel lands in, over 4 random
views (6 pairs) per volume. Volumes: four rotated anisotropic 256^3 limb phantoms, or the
CT files given with ``--ct``. Views: ``--sampling fixed`` (the paper's pose distribution,
pixels sized so ~170 mm fill the detector, whole volume) or ``--sampling build`` (two samples
per volume from the dataset builder's sampler: crops of 50-100 % per axis, each view's
pixel pitch fit to the crop).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
from timing import median_ms

from drrgen.correspondence import checks, correspondence
from drrgen.correspondence.coarse import coarse_cells, coarse_volume, iso_patch_width_mm
from drrgen.correspondence.footprint import sub_ray_view
from drrgen.correspondence.ground_truth import PATCH_FRACTION, SUPERSAMPLE
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


def plan_cells(volume: Volume, views: list, fraction: float = PATCH_FRACTION) -> np.ndarray:
    """(3,) coarse cells `correspondence` uses for these views and this fraction."""
    return coarse_cells(volume, fraction * iso_patch_width_mm(volume, views, PATCH))


def fresh(volume: Volume) -> Volume:
    """The same data and affine with an empty cache (no copy of the data)."""
    return Volume(volume.data, volume.affine, volume.source)


def brute_force_ms(volume: Volume, views: list, threads: int, sample: int) -> tuple[float, int]:
    """Extrapolated ms of one `project` call per non-air coarse voxel and view; (ms, voxels)."""
    grid = coarse_volume(volume, plan_cells(volume, views))
    voxels = np.argwhere(grid.data > 0)
    pick = voxels[np.random.default_rng(0).choice(len(voxels), min(sample, len(voxels)), False)]
    fine_views = [sub_ray_view(v, PATCH, SUPERSAMPLE) for v in views]
    hp, wp = views[0].shape[0] // PATCH, views[0].shape[1] // PATCH

    def one_call(idx, view):
        one = np.zeros_like(grid.data)
        one[tuple(idx)] = grid.data[tuple(idx)]
        drr = project(Volume(one, grid.affine), view, threads=threads)
        return drr.reshape(hp, SUPERSAMPLE, wp, SUPERSAMPLE).mean(axis=(1, 3))

    for view in fine_views:
        one_call(pick[0], view)  # warm-up
    t = time.perf_counter()
    for n, idx in enumerate(pick):
        one_call(idx, fine_views[n % len(fine_views)])
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


def limb_phantoms(n: int):
    """Yield (name, volume): four rotated anisotropic n^3 limb phantoms (about 150 mm wide)."""
    for seed, kind in [(0, "forearm"), (1, "hand"), (2, "forearm"), (3, "hand")]:
        spacing = np.array([0.55, 0.6, 0.7]) * 256 / n
        vol = rotated(make_phantom(seed, shape=(n, n, n), spacing_mm=spacing, kind=kind))
        yield f"{kind} seed {seed}", vol


def fixed_views(vol: Volume, rng, size: int) -> list:
    """4 random C-arm views (the paper's pose distribution) of the whole volume; pixels sized
    so that 170 mm at the isocenter (the volume centre, jittered) fill the detector."""
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
    return views


def accuracy_cases(n: int, size: int, sampling: str, cts: list[str]):
    """Yield (name, volume, 4 views) for the accuracy run.

    sampling "fixed": the limb phantoms (or the CTs), whole, with `fixed_views`; "build": per
    volume two samples of the dataset builder (`drrgen.build.sampling.draw_sample`, default
    ranges: a crop of 50-100 % per axis, each view's pixel pitch fit to the crop), the crop
    being the volume (as the builder calls `correspondence`).
    """
    from drrgen.build.sampling import draw_sample
    from drrgen.geometry.poses import SamplingConfig
    from drrgen.volume import read_ct

    rng = np.random.default_rng(11)
    volumes = [(path, read_ct(path)) for path in cts] if cts else limb_phantoms(n)
    for name, vol in volumes:
        if sampling == "fixed":
            yield name, vol, fixed_views(vol, rng, size)
            continue
        for k in range(2):
            smp = draw_sample(rng, vol, 4, size, SamplingConfig())
            crop = vol.crop(smp.start, smp.stop)
            yield f"{name} crop {k} {crop.shape_ijk}", crop, list(smp.views)


def tissue_seen(vol: Volume, views: list, pairs, n_patch: int, chunk: int = 2_000_000):
    """Per pair, the (N, N) bool patch pairs some tissue voxel centre lands in (chunked)."""
    kji = np.argwhere(vol.data >= -300.0)
    seen = [np.zeros((n_patch, n_patch), dtype=bool) for _ in pairs]
    for lo in range(0, len(kji), chunk):
        xyz = vol.index_to_world(kji[lo : lo + chunk, ::-1].astype(np.float64))
        hits = [checks.patch_index(v, xyz, PATCH) for v in views]
        for p, (i, j) in enumerate(pairs):
            seen[p] |= checks.seen_pairs(hits[i], hits[j], n_patch)
    return seen


def accuracy(args) -> None:
    """Print the acceptance checks' miss shares over all cases' view pairs per setting."""
    settings = [(f, s) for f in args.fraction for s in args.supersample]
    misses: dict = {key: [] for key in settings}
    unsupported = {key: [] for key in settings}
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    n_patch = (args.size // PATCH) ** 2
    cases = accuracy_cases(args.volume, args.size, args.sampling, args.ct)
    for name, vol, views in cases:
        # The points' patches per view do not depend on the setting: computed once.
        bone = checks.bone_points(vol, hu_bone=args.hu_bone, n_points=args.points)
        bone_hits = [checks.patch_index(v, bone, PATCH) for v in views]
        seen = tissue_seen(vol, views, pairs, n_patch)
        for f, s in settings:
            c = correspondence(vol, views, supersample=s, fraction=f)
            for p, (i, j) in enumerate(pairs):
                misses[f, s].append(checks.miss_share(bone_hits[i], bone_hits[j], c[p]))
                unsupported[f, s].append(checks.unsupported_share(seen[p], c[p]))
        print(f"{name}: done", flush=True)
    print(
        f"{len(misses[settings[0]])} pairs, {args.points} bone points (HU > {args.hu_bone}) per "
        "volume; bone: share of bone points with C < 0.01 at their patch pair; unsupported: "
        "share of entries C >= 0.05 that no tissue voxel (HU >= -300) lands in"
    )
    print(
        f"{'fraction':>8s} {'s':>3s} {'bone mean':>10s} {'bone max':>9s} "
        f"{'unsup mean':>11s} {'unsup max':>10s}"
    )
    for f, s in settings:
        m, u = np.array(misses[f, s]), np.array(unsupported[f, s])
        print(
            f"{f:8.2f} {s:3d} {100 * m.mean():9.3f}% {100 * m.max():8.3f}% "
            f"{100 * u.mean():10.3f}% {100 * u.max():9.3f}%"
        )


def timing_grid(args) -> None:
    """Print single-thread timings (ms, medians) for every (fraction, supersample)."""
    n = args.volume
    volume = make_phantom(0, shape=(n, n, n), spacing_mm=(160.0 / n,) * 3, kind="forearm")
    views = make_views(volume, 2, args.size)
    threads = args.threads[0]
    print(f"{threads} thread(s); 2 views {args.size}^2, patch {PATCH}, volume {n}^3 HU")
    print(
        f"{'fraction':>8s} {'s':>3s} {'voxels':>7s} {'pair, cached':>13s} {'coarse pass':>12s} "
        f"{'call, fresh CT':>15s}"
    )
    for f in args.fraction:
        for s in args.supersample:
            cells = plan_cells(volume, views, f)
            cached = fresh(volume)
            kw = dict(supersample=s, fraction=f, threads=threads)
            with numba_threads(threads):
                ms = median_ms(
                    {
                        "cached": partial(correspondence, cached, views, **kw),
                        "coarse": partial(coarse_volume, volume, cells),
                        "fresh": lambda kw=kw: correspondence(fresh(volume), views, **kw),
                    },
                    args.repeats,
                )
            n_vox = np.count_nonzero(coarse_volume(volume, cells).data)
            print(
                f"{f:8.2f} {s:3d} {n_vox:7d} {ms['cached']:10.2f} ms {ms['coarse']:9.2f} ms "
                f"{ms['fresh']:12.2f} ms",
                flush=True,
            )


def speed(args) -> None:
    """Print the speed rows (see the module docstring) per thread count."""
    n = args.volume
    volume = make_phantom(0, shape=(n, n, n), spacing_mm=(160.0 / n,) * 3, kind="forearm")
    views2, views4 = make_views(volume, 2, args.size), make_views(volume, 4, args.size)
    q = n // 8
    start, stop = (q, q // 2, q + 1), (n - 1, n - q // 2, n)  # 3/4 of each axis
    cached = fresh(volume)
    cells = plan_cells(volume, views2)
    crop = volume.crop(start, stop)
    crop_cells = plan_cells(crop, views2)
    grid = coarse_volume(volume, cells)
    print(
        f"volume {volume.data.shape} HU ({volume.data.nbytes / 2**20:.0f} MiB), views "
        f"{args.size}x{args.size}, patch {PATCH}, supersample {SUPERSAMPLE}, coarse cells "
        f"{cells.tolist()} ({PATCH_FRACTION} patch) with {np.count_nonzero(grid.data)} "
        f"non-air voxels; crop {crop.shape_ijk} -> cells {crop_cells.tolist()}"
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
                    "coarse pass, whole CT": lambda: coarse_volume(volume, cells),
                    "coarse pass, crop": lambda: coarse_volume(
                        volume.crop(start, stop), crop_cells
                    ),
                    "call, 2 views, fresh CT": call(lambda: fresh(volume), views2),
                    "call, 2 views, fresh crop": call(lambda: volume.crop(start, stop), views2),
                    "read volume once": lambda: volume.data.max(),
                },
                args.repeats,
            )
        ms["per pair, 4 views, cached"] /= 6
        brute, n_vox = brute_force_ms(volume, views2, threads, args.sample)
        ms["brute force (extrapolated)"] = brute
        ms["speed-up per pair"] = brute / ms["per pair, grid cached"]
        coarse = ms["coarse pass, whole CT"]
        ms["speed-up per call"] = (coarse + brute) / ms["call, 2 views, fresh CT"]
        for name, value in ms.items():
            rows.setdefault(name, []).append(value)
    print(f"{'':28s}" + "".join(f"{f'{t} thread(s)':>14s}" for t in args.threads))
    for name, values in rows.items():
        unit = "x" if name.startswith("speed-up") else " ms"
        print(f"{name:28s}" + "".join(f"{v:>11.{1 if v >= 100 else 2}f}{unit:3s}" for v in values))
    print(
        f"brute force = (mean of {args.sample} timed one-voxel `project` calls on the coarse "
        f"grid, sub-ray detector) x {n_vox} non-air coarse voxels x 2 views; extrapolated."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=256, help="detector pixels per side")
    parser.add_argument("--volume", type=int, default=256, help="phantom voxels per side")
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--sample", type=int, default=400, help="brute-force calls timed")
    parser.add_argument("--accuracy", action="store_true", help="run the acceptance checks")
    parser.add_argument("--grid", action="store_true", help="time every fraction x supersample")
    parser.add_argument(
        "--fraction", type=float, nargs="+", default=[PATCH_FRACTION], help="coarse voxel / patch"
    )
    parser.add_argument(
        "--supersample", type=int, nargs="+", default=[SUPERSAMPLE], help="sub-rays per patch side"
    )
    parser.add_argument("--points", type=int, default=10000, help="bone points per volume")
    parser.add_argument("--hu-bone", type=float, default=700.0, help="bone threshold, HU")
    parser.add_argument(
        "--sampling", choices=["fixed", "build"], default="fixed", help="views (--accuracy)"
    )
    parser.add_argument("--ct", nargs="*", default=[], help="CT files instead of phantoms")
    args = parser.parse_args()
    if args.accuracy:
        accuracy(args)
        return
    if args.grid:
        timing_grid(args)
        return

    speed(args)


if __name__ == "__main__":
    main()
