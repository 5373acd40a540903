"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time

import numpy as np


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


def machine() -> str:
    """One line naming the machine the figures come from: CPU model, cores, SIMD flags,
    Numba/LLVM versions, Numba's threading layer setting and the projector's kernels."""
    import os
    import platform

    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512vl", "fma") if f in flags]
    try:
        import llvmlite
        import numba

        versions = f"numba {numba.__version__}, llvmlite {llvmlite.__version__}"
    except ImportError:
        versions = "numba n/a"
    layer = os.environ.get("NUMBA_THREADING_LAYER", "default")
    return (
        f"machine: {model}, {os.cpu_count()} cores, {'/'.join(simd) or 'no AVX'}; {versions}, "
        f"threading layer {layer}; {projector_variant()}"
    )


def projector_variant() -> str:
    """Which projector kernels this process runs and why (`kernels.layout_choice`)."""
    from drrgen.errors import UserError
    from drrgen.projector import intrinsics, kernels

    try:
        inner, why = kernels.layout_choice()
        precision = kernels.precision_choice()
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    row_loads = not inner and kernels.ROW_LOADS and intrinsics.target_has_avx512()
    layout = (
        f"{'slices-inner' if inner else 'row'} layout, {'row loads' if row_loads else 'gathers'}"
    )
    counts = "uint32 pairs" if inner else "uint16"
    values = f"16-bit counts ({counts}) for mu volumes" if precision == "auto" else "float32"
    return f"projector: {layout} ({why}), {values}"
