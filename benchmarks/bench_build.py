"""End-to-end speed of `drrgen build`: pairs/s for a 512-pair build of one 256^3 CT.

Run: ``.venv/bin/python benchmarks/bench_build.py [--ct data/ct/cxr.nii.gz] [--pairs 512]``
(``[--no-rtk]``: without it, RTK's CPU Joseph renders DRRs of the same CT first, 2 threads, for
the machine-independent figure: pairs per RTK-DRR time, acceptance 4).

The CT (by default the embedded chest CT ``data/ct/cxr.nii.gz`` if present, else a 256^3 limb
phantom) is resampled to 256^3 and written to a temporary folder (not timed). Then the real
command runs as a subprocess, start-up included (interpreter, Dask cluster, Numba cache
loads): ``drrgen build ... size=256 patch=16 views=2 samples_per_ct=512``. Reported:
wall time and pairs/s (acceptance floor 25), where the task time goes (read/prepare volume,
view sampling, DRRs, correspondence, compression + writes; wall and CPU seconds summed over
workers, CPU ms per pair), the rest (start-up, scheduling, shutdown), the steady-state rate of
a long build (target 58 pairs/s = the paper's 207,600 pairs in one hour), and the store's bytes
per pair. On a shared machine wall time includes waiting for other processes; the CPU-time
figures say what the build itself costs.

``--cold``: a fresh clone's first run on this machine. The build runs twice with
``NUMBA_CACHE_DIR`` set to a new empty folder: first cold (the driver compiles every kernel,
`drrgen.build.warm`), then warm (the same folder, now full). For each: end-to-end wall time,
the kernel warm-up, the first-sample latency (launch of the command -> the first block's
``volume_id`` marker on disk, polled every 20 ms) and the cache files written after the
workers started (kernels a worker compiled itself: should be 0). The usual report follows,
for the warm run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ct import DEFAULT_CT, cube_ct
from timing import machine

FLOOR, TARGET = 25.0, 58.0


def prepare_ct(ct: Path | None, n: int, out: Path) -> str:
    """Write a n^3 CT to `out` (resampled from `ct`, or a phantom). Returns a description."""
    from drrgen.volume import write_ct

    if ct is None:
        from drrgen.phantoms import make_phantom

        vol = make_phantom(0, shape=(n, n, n), spacing_mm=(0.6, 0.6, 0.6))
        write_ct(vol, out)
        return f"limb phantom {n}^3 at 0.6 mm"
    vol, what = cube_ct(ct, n)
    write_ct(vol, out)
    return what


def rtk_drr_seconds(ct: Path, args) -> float | None:
    """Median seconds of RTK's CPU Joseph (2 threads) per DRR of the benchmark's CT, over the
    projector benchmark's 5 views (same detector size), or None without RTK installed."""
    try:
        import itk  # noqa: F401
    except ImportError:
        print("RTK not installed (pip install -e '.[bench]'): no RTK DRR time")
        return None
    import numpy as np
    from bench_projector import bench_views, ct_framing, rtk_projector
    from timing import median_ms

    from drrgen.volume import read_ct

    vol = read_ct(ct).to_mu()
    centre, pixel_mm = ct_framing(vol, args.size)
    ms = [
        median_ms({"rtk": rtk_projector(vol, view, 2)}, 3)["rtk"]
        for _, view in bench_views(args.size, pixel_mm, centre)
    ]
    return float(np.median(ms)) / 1e3


def run_build(ct_dir: Path, store: Path, args, env: dict | None = None) -> dict:
    """Run `drrgen build` in a subprocess.

    Returns:
        ``wall`` (seconds, launch to exit), ``out`` (its stdout), ``first`` (seconds from
        launch until the first block's ``volume_id`` marker was on disk, None if never) and
        ``stderr``: (seconds since launch, line) as the lines arrived.
    """
    cmd = [
        sys.executable,
        "-c",
        "from drrgen.cli import app; app()",
        "build",
        "--ct-dir",
        str(ct_dir),
        "--out",
        str(store),
        f"size={args.size}",
        f"patch={args.patch}",
        "views=2",
        f"samples_per_ct={args.pairs}",
        f"block={args.block}",
        f"corr_definition={args.definition}",
        "--no-progress",
    ]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    env = os.environ | {"NUMBA_THREADING_LAYER": "omp"} | (env or {})
    markers = store / "volume_id"
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = threading.Thread(
        target=lambda: lines.extend((time.perf_counter() - t0, x) for x in proc.stderr)
    )
    reader.start()
    first = None
    while proc.poll() is None:
        if first is None and markers.is_dir():
            if any(p.is_file() and p.name != "zarr.json" for p in markers.rglob("*")):
                first = time.perf_counter() - t0
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    reader.join()
    if proc.returncode:
        raise SystemExit(
            f"drrgen build failed ({proc.returncode}):\n{''.join(x for _, x in lines)}"
        )
    return {"wall": wall, "out": out, "first": first, "stderr": lines}


def _cache_files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*.nb*")}


def cold_and_warm(ct_dir: Path, tmp: Path, args) -> dict:
    """The build with an empty Numba cache, then again with the cache it filled; prints both.
    Returns the warm run."""
    cache = tmp / "numba_cache"
    cache.mkdir()
    env = {"NUMBA_CACHE_DIR": str(cache)}
    rows = []
    for name in ("cold", "warm"):
        before = _cache_files(cache)
        launched = time.time()
        run = run_build(ct_dir, tmp / f"{name}.zarr", args, env)
        started = next((t for t, x in run["stderr"] if x.startswith("running on")), run["wall"])
        late = [
            p
            for p, m in _cache_files(cache).items()
            if before.get(p) != m and m > launched + started
        ]
        warm = re.search(r"kernel warm-up ([\d.]+) s", run["out"])
        first = re.search(r"first block ([\d.]+) s", run["out"])
        rows.append((name, run, float(warm.group(1)) if warm else float("nan"), first, late))
    print(f"fresh clone vs warm cache (NUMBA_CACHE_DIR={cache}, {args.pairs} pairs):")
    for name, run, warm_s, first, late in rows:
        since_launch = f"{run['first']:.1f} s" if run["first"] is not None else "n/a"
        since_start = f"{float(first.group(1)):.1f} s" if first else "n/a"
        print(
            f"  {name}: end to end {run['wall']:.1f} s, kernel warm-up {warm_s:.1f} s, "
            f"first sample {since_launch} after launch ({since_start} after the build started), "
            f"{len(late)} cache files written by workers"
        )
    (_, cold, cold_w, _, _), (_, warm, warm_w, _, _) = rows
    if cold["first"] is not None and warm["first"] is not None:
        print(
            f"  cost of the first run: {cold['wall'] - warm['wall']:+.1f} s end to end, "
            f"{cold_w - warm_w:+.1f} s warm-up, {cold['first'] - warm['first']:+.1f} s to the "
            "first sample"
        )
    return warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--ct",
        type=Path,
        default=DEFAULT_CT if DEFAULT_CT.exists() else None,
        help="CT to resample (default: data/ct/cxr.nii.gz, else a phantom)",
    )
    p.add_argument("--n", type=int, default=256, help="CT grid size after resampling")
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--size", type=int, default=256)
    p.add_argument(
        "--definition", default="paper", choices=["paper", "peak"], help="correspondence GT"
    )
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-rtk", action="store_true", help="skip the RTK DRR time")
    p.add_argument(
        "--cold",
        action="store_true",
        help="run twice with a fresh NUMBA_CACHE_DIR: a fresh clone's first run, then warm",
    )
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        tmp = Path(tmp)
        (tmp / "ct").mkdir()
        what = prepare_ct(args.ct, args.n, tmp / "ct" / "ct.nii.gz")
        rtk_s = None if args.no_rtk else rtk_drr_seconds(tmp / "ct" / "ct.nii.gz", args)
        load0 = f"{os.getloadavg()[0]:.2f}"
        if args.cold:
            run = cold_and_warm(tmp / "ct", tmp, args)
            store = tmp / "warm.zarr"
        else:
            store = tmp / "bench.zarr"
            run = run_build(tmp / "ct", store, args)
        wall, out = run["wall"], run["out"]
        from drrgen.build.inspect import store_info

        info = store_info(str(store))
    report(args, what, wall, out, info, rtk_s, load0)


def report(args, what: str, wall: float, out: str, info: dict, rtk_s, load0: str) -> None:
    """Print the benchmark's figures from the build's wall time, its stdout and its store."""
    stored = sum(info["bytes"].values())
    line = out.split("task time")[1].splitlines()[0]
    stages = {k: (float(w), float(c)) for k, w, c in re.findall(r"(\w+) ([\d.]+)/([\d.]+)", line)}
    where = re.search(r"\((local Dask[^)]*|in this[^)]*|Dask sched[^)]*)\)", out)
    pairs = args.pairs
    print(machine())
    print(f"CT: {what}")
    print(
        f"build: {pairs} pairs, {args.size}x{args.size}, patch {args.patch}, V=2, "
        f"block {args.block}, {where.group(1) if where else '?'}, {os.cpu_count()} cores"
    )
    rate = pairs / wall
    verdict = "OK" if rate >= FLOOR else "BELOW FLOOR"
    print(
        f"end to end (start-up included): {wall:.1f} s, {rate:.1f} pairs/s "
        f"[floor {FLOOR:.0f}: {verdict}; target {TARGET:.0f}]"
    )
    if rtk_s is not None:
        print(
            f"RTK's CPU Joseph on the same CT: {1e3 * rtk_s:.1f} ms per {args.size}x{args.size} "
            f"DRR (2 threads, median over 5 views); pairs per RTK-DRR time: {rate * rtk_s:.2f} "
            f"[acceptance 4: {'OK' if rate * rtk_s >= 4 else 'BELOW'}]"
        )
    busy = sum(w for w, _ in stages.values())
    cpu = sum(c for _, c in stages.values())
    print("task time per stage, summed over workers: wall s, cpu s, cpu ms per pair, cpu share")
    for name, label in [
        ("read", "read/prepare volume"),
        ("sample", "view sampling"),
        ("drr", "DRRs"),
        ("corr", "correspondence"),
        ("write", "compression + writes"),
    ]:
        w, c = stages.get(name, (0.0, 0.0))
        print(f"  {label:<22} {w:7.2f} {c:7.2f} {1e3 * c / pairs:7.2f} ms {100 * c / cpu:5.1f} %")
    print(f"  {'(sum)':<22} {busy:7.2f} {cpu:7.2f} {1e3 * cpu / pairs:7.2f} ms")
    faults = re.search(r"^memory +(\d+ minor page faults per sample.*)$", out, re.MULTILINE)
    if faults:  # the build summary's own line (`BuildSummary.format`)
        print(f"memory: {faults.group(1)}")
    m = re.search(r"(\d+) workers x (\d+) threads", out)
    workers, threads = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    print(
        f"start-up, scheduling and shutdown: {wall - busy / workers:.1f} s of wall time "
        f"(wall - task wall time / {workers} workers)"
    )
    cores = min(os.cpu_count() or 1, workers * threads)
    startup = wall - busy / workers
    steady = pairs / (busy / workers)
    idle = pairs / (cpu / cores)
    print(
        f"steady state (task time only, as in a long build): {steady:.1f} pairs/s measured, "
        f"{idle:.1f} pairs/s from CPU time on {cores} otherwise idle cores "
        f"(wall/cpu = {busy / cpu:.2f}; > 1 means the tasks waited for a busy machine)"
    )
    print(
        f"paper-scale build (207,600 pairs): {207600 / steady / 3600:.1f} h measured, "
        f"{207600 / idle / 3600:.1f} h on idle cores [target 1 h]; this {pairs}-pair build on "
        f"idle cores: {pairs / (cpu / cores + startup):.1f} pairs/s with the {startup:.1f} s "
        "start-up"
    )
    print(f"load average before/after: {load0} / {os.getloadavg()[0]:.2f}")
    print(
        f"store: {stored / 1e6:.1f} MB, {stored / pairs / 1e3:.1f} kB per pair "
        f"(views {info['bytes']['views'] / pairs / 1e3:.1f} kB, "
        f"corr {info['bytes']['corr'] / pairs / 1e3:.1f} kB)"
    )


if __name__ == "__main__":
    main()
