"""End-to-end speed of `drrgen build`: pairs/s for a 512-pair build of one 256^3 CT.

Run: ``.venv/bin/python benchmarks/bench_build.py [--ct data/ct/cxr.nii.gz] [--pairs 512]``

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
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
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


def run_build(ct_dir: Path, store: Path, args) -> tuple[float, str]:
    """Run `drrgen build` in a subprocess; return (wall seconds, its stdout)."""
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
    env = os.environ | {"NUMBA_THREADING_LAYER": "omp"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"drrgen build failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc.stdout


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
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        tmp = Path(tmp)
        (tmp / "ct").mkdir()
        what = prepare_ct(args.ct, args.n, tmp / "ct" / "ct.nii.gz")
        load0 = f"{os.getloadavg()[0]:.2f}"
        wall, out = run_build(tmp / "ct", tmp / "bench.zarr", args)
        from drrgen.build.inspect import store_info

        info = store_info(str(tmp / "bench.zarr"))
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
        f"{207600 / idle / 3600:.1f} h on idle cores [target 1 h]; this 512-pair build on "
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
