"""Compile (or load from the cache) every Numba kernel a build uses, before its workers start.

All kernels are ``@njit(cache=True)``: compiled once, they are written to Numba's cache
(``__pycache__`` beside the sources; Numba's user cache folder when that is read-only;
``NUMBA_CACHE_DIR`` when set), which every process on the machine reads. A build on a local
cluster calls `warm_kernels` in the driver, so that on a fresh clone the kernels are compiled
once there instead of in every worker at the same time, and the workers only load them. The
cache is per CPU model, so builds with SLURM or an external scheduler skip it (their workers
may run on another kind of CPU than the driver; `pipeline._warm_up`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from drrgen.build.config import BuildConfig
from drrgen.build.sampling import TissueIndex
from drrgen.build.tasks import LoadedCT, compute_block
from drrgen.volume import Volume

NOTE_AFTER_S = 1.0  # a warm-up this long compiled something: say so


def tiny_ct(n: int = 12, spacing_mm: float = 2.0) -> LoadedCT:
    """A n^3 HU volume: a soft-tissue ball with a bone core in air, read as a build reads it."""
    k, j, i = np.mgrid[:n, :n, :n].astype(np.float32)
    r = np.sqrt((i - n / 2) ** 2 + (j - n / 2) ** 2 + (k - n / 2) ** 2)
    data = np.where(r < n / 2.5, np.float32(40.0), np.float32(-1000.0))
    data[r < n / 6] = 1000.0
    affine = np.diag([spacing_mm] * 3 + [1.0])
    hu = Volume(data, affine, "warm-up")
    return LoadedCT(hu, hu.to_mu(), TissueIndex.build(hu, -300.0))


def warm_kernels(
    cfg: BuildConfig, device: str | None = None, echo: Callable[[str], None] = print
) -> float:
    """Run one tiny block of `cfg` (same kernels and argument types, 1 sample of 2 x 2
    patches) so that every kernel a task calls is compiled or loaded in this process.

    The tiny CT's mu is read as 16-bit counts (`projector.kernels.value_scale`), as a CT's
    is; a CT that keeps float32 values (an outlying maximum, DRRGEN_PRECISION=float32) has
    its workers compile the float32 projector kernels on first use.

    Args:
        cfg: the build's parameters (views, patch, correspondence definition, ...).
        device: the build's DRR device; with a torch device the warm-up projects with torch on
            the CPU (only the Numba ray setup is cached; the GPU is not touched here).
        echo: where the one-line note goes when the warm-up compiled (took > 1 s).

    Returns:
        Seconds spent.
    """
    from drrgen.projector.torch_joseph import parse_device

    # Outside the timing: parsing a torch device imports torch (about 1 s), not a compile.
    warm_device = None if parse_device(device) is None else "torch:cpu"
    t0 = time.perf_counter()
    tiny = replace(cfg, samples_per_ct=1, block=1, size=2 * cfg.patch)
    compute_block(tiny_ct(), tiny, 0, 0, threads=1, device=warm_device)
    seconds = time.perf_counter() - t0
    if seconds > NOTE_AFTER_S:
        echo(f"compiling kernels (first run on this machine) ... {seconds:.1f} s")
    return seconds
