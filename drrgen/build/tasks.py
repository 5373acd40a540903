"""One block -> arrays -> whole shards in the store. Runs on Dask workers (or in-process).

A task never raises for a bad input: it returns a `BlockResult` with the file and reason, so
one bad CT never stops the build. The last CT read is kept per worker process (the blocks of
one volume usually follow each other), with its mu volume and cached projector layouts.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drrgen.build.config import BuildConfig
from drrgen.build.sampling import TissueIndex, sample_block
from drrgen.build.store import open_store
from drrgen.correspondence import correspondence
from drrgen.errors import CTReadError
from drrgen.projector import project
from drrgen.runtime import adopt_numba_env, keep_freed_memory
from drrgen.store_contract import Layout, write_block
from drrgen.volume import Volume, read_ct


@dataclass(frozen=True)
class BlockTask:
    """What to compute: one block of one volume.

    Args:
        block: global block index (= shard index along samples).
        volume_id: row of the volume table.
        block_in_volume: block index within the volume (seeds the draws).
        path: absolute path of the CT file or DICOM folder.
        series_id: DICOM series to read, None for files or single-series folders.
    """

    block: int
    volume_id: int
    block_in_volume: int
    path: str
    series_id: str | None = None


@dataclass(frozen=True)
class Job:
    """What every task of a build shares.

    Args:
        store_url: local path or fsspec URL of the store.
        storage_options: fsspec options, or None.
        params: `BuildConfig.to_dict()` of the build.
        layout: the store's `Layout`.
        threads: Numba threads per task (None: Numba's default).
        device: where the DRRs are rendered (`drrgen.project`'s device: None for the Numba
            CPU projector, "cuda" for the torch one on the GPU). A run-time choice, not a build
            parameter: the DRRs agree across devices to float32 rounding (<= 1e-5 relative).
    """

    store_url: str
    storage_options: dict | None
    params: dict
    layout: Layout
    threads: int | None = None
    device: str | None = None


@dataclass
class BlockResult:
    """What a task reports back to the driver.

    Args:
        block: global block index.
        volume_id: the volume's id.
        ok: True when the block was written.
        path: the CT path (for messages).
        error: the reason it failed ('' when ok).
        info: the volume's ``shape`` (i, j, k), ``spacing`` (mm) and ``affine`` ((4, 4) voxel
            (i, j, k) -> LPS mm) when it could be read.
        timings: per stage (read, sample, drr, corr, write): wall-clock seconds, the
            process's CPU seconds under ``cpu_<stage>`` and its minor page faults under
            ``faults_<stage>`` (`Clock`).
    """

    block: int
    volume_id: int
    ok: bool
    path: str
    error: str = ""
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedCT:
    """A CT ready to sample: HU volume, mu volume (1/mm) and tissue index."""

    hu: Volume
    mu: Volume
    tissue: TissueIndex


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=1)
def _load_cached(path: str, series_id: str | None, stamp, mu_water: float, air_threshold_hu: float):
    hu = read_ct(path, series_id=series_id)
    if not np.any(hu.data > air_threshold_hu):
        raise CTReadError(
            path, f"no tissue: every voxel is below air_threshold_hu = {air_threshold_hu:g} HU"
        )
    return LoadedCT(hu, hu.to_mu(mu_water), TissueIndex.build(hu, air_threshold_hu))


def load_ct(path: str, series_id: str | None, mu_water: float, air_threshold_hu: float) -> LoadedCT:
    """Read and check a CT (cached: the last one read in this process is kept).

    Raises:
        CTReadError: the file and the reason (unreadable, not 3-D, all air, ...).
    """
    if not os.path.exists(path):
        raise CTReadError(path, "no such file or directory")
    return _load_cached(
        str(path), series_id, _stamp(path), float(mu_water), float(air_threshold_hu)
    )


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where the OS does not count them)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Clock:
    """Wall and CPU seconds and minor page faults (this process, all threads) per stage, lap
    by lap.

    CPU time tells what a stage costs; wall time also counts waiting for a busy machine.
    Outside the CT's read, page faults should stay near 0 once a worker's first sample has
    touched its memory: many mean that freed memory goes back to the OS and is faulted in
    again (`drrgen.runtime.keep_freed_memory`).
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = (time.perf_counter(), time.process_time(), _minor_faults())

    def lap(self, stage: str) -> None:
        """Charge the time and page faults since the previous lap to `stage` (keys `stage`,
        cpu_`stage` and faults_`stage`)."""
        now = (time.perf_counter(), time.process_time(), _minor_faults())
        for key, t0, t1 in (
            (stage, self._last[0], now[0]),
            (f"cpu_{stage}", self._last[1], now[1]),
            (f"faults_{stage}", self._last[2], now[2]),
        ):
            self.seconds[key] = self.seconds.get(key, 0.0) + t1 - t0
        self._last = now


def compute_block(
    ct: LoadedCT,
    cfg: BuildConfig,
    volume_id: int,
    block_in_volume: int,
    threads: int | None = None,
    clock: Clock | None = None,
    device: str | None = None,
) -> dict[str, np.ndarray]:
    """Draw and render the `cfg.block` samples of one block.

    Args:
        ct: the loaded CT.
        cfg: build parameters.
        volume_id: the volume's id (seeds the draws, fills `volume_id`).
        block_in_volume: block index within the volume (seeds the draws).
        threads: Numba threads.
        clock: charged with the stages sample, drr and corr when given.
        device: the DRRs' projector device (`drrgen.project`); correspondence stays on the CPU.

    Returns:
        Arrays named as the store's, leading axis = cfg.block samples, dtypes of the store.
    """
    clock = clock or Clock()
    samples = sample_block(
        cfg.seed,
        volume_id,
        block_in_volume,
        cfg.block,
        ct.hu,
        cfg.views,
        cfg.size,
        cfg.sampling,
        ct.tissue,
    )
    b, v, s, p, n = cfg.block, cfg.views, cfg.size, len(cfg.pairs), cfg.patches_per_view
    out = {
        "views": np.empty((b, v, s, s), np.float16),
        "corr": np.empty((b, p, n, n), np.float16),
        "geometry": np.empty((b, v, 12), np.float64),
        "pose": np.empty((b, v, 6), np.float32),
        "crop": np.empty((b, 2, 3), np.int32),
        "volume_id": np.full((b,), volume_id, np.int32),
    }
    clock.lap("sample")
    for i, smp in enumerate(samples):
        mu = ct.mu.crop(smp.start, smp.stop)  # a view of the parent: no copy
        for k, view in enumerate(smp.views):
            out["views"][i, k] = project(mu, view, threads=threads, device=device)
        clock.lap("drr")
        out["corr"][i] = correspondence(
            ct.hu.crop(smp.start, smp.stop),
            list(smp.views),
            patch=cfg.patch,
            air_threshold_hu=cfg.air_threshold_hu,
            threads=threads,
            supersample=cfg.corr_supersample,
            fraction=cfg.corr_fraction,
            definition=cfg.corr_definition,
        )
        clock.lap("corr")
        out["geometry"][i] = [view.as_vector() for view in smp.views]
        out["pose"][i] = smp.pose
        out["crop"][i] = [smp.start, smp.stop]
    return out


def caused_by_interrupt(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt is anywhere in `exc`'s chain of causes and contexts.

    Ctrl-C inside a compiled kernel or a library can surface several exceptions deep (e.g. a
    SystemError whose context's context is the interrupt); such an error is never the CT's fault.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, KeyboardInterrupt):
            return True
        todo.extend(e for e in (err.__cause__, err.__context__) if e is not None)
    return False


def run_block(task: BlockTask, job: Job) -> BlockResult:
    """Compute one block and write it (whole shards). Never raises for a bad CT.

    Args:
        task: which block.
        job: the build's shared settings.

    Returns:
        A `BlockResult`; on failure `error` names the reason (the path is in `path`).
    """
    adopt_numba_env()
    keep_freed_memory()
    cfg = BuildConfig.from_dict(job.params)
    result = BlockResult(task.block, task.volume_id, False, task.path)
    try:
        clock = Clock()
        ct = load_ct(task.path, task.series_id, cfg.mu_water, cfg.air_threshold_hu)
        result.info = {
            "shape": list(ct.hu.shape_ijk),
            "spacing": [float(x) for x in ct.hu.spacing],
            "affine": ct.hu.affine.tolist(),
        }
        clock.lap("read")
        arrays = compute_block(
            ct, cfg, task.volume_id, task.block_in_volume, job.threads, clock, job.device
        )
    except CTReadError as exc:
        result.error = exc.reason
        return result
    except Exception as exc:  # a bug or an odd volume: report it, keep the build going
        if caused_by_interrupt(exc):
            # Ctrl-C inside a compiled kernel comes out as a SystemError: not the volume's fault
            raise KeyboardInterrupt from None
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        result.error = f"{type(exc).__name__} at {where}: {exc}"
        return result
    group = open_store(job.store_url, mode="r+", storage_options=job.storage_options)
    write_block(group, job.layout, task.block, arrays)
    clock.lap("write")
    result.timings = clock.seconds
    result.ok = True
    return result
