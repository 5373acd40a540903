"""The `drrgen build` driver: discover CTs, open or create the store, run the missing blocks.

Resumable and deterministic by construction: a block's samples depend only on (seed, volume,
block), every task writes whole shards with the `volume_id` marker last, and a rerun reads the
markers, checks every written block against its checksums, and runs only the blocks that are
missing or damaged. Only this driver writes group attributes, holding the store's lock
(`drrgen.build.lock`) so that a second build of the same store refuses to start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version as _pkg_version
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drrgen.build.cluster import ClusterOptions, Runner, open_client
from drrgen.build.config import BuildConfig
from drrgen.build.inspect import check_written_block
from drrgen.build.lock import hold_lock
from drrgen.build.sampling import POSE_FIELDS
from drrgen.build.store import (
    clear_block,
    clear_store,
    create_store,
    is_partial,
    open_store,
    store_is_empty,
)
from drrgen.build.tasks import BlockResult, BlockTask, Job, run_block
from drrgen.build.warm import warm_kernels
from drrgen.projector import kernels
from drrgen.projector.torch_joseph import parse_device
from drrgen.store_contract import (
    FORMAT,
    FORMAT_VERSION,
    Layout,
    StoreError,
    checksum_rows,
    create_arrays,
    upgrade_params,
    written_blocks,
)
from drrgen.volume.discover import CTSource, discover_cts, hash_sources

STAGES = ("read", "sample", "drr", "corr", "write")
INFO_KEYS = ("shape", "spacing", "affine")  # filled in from the first block read


@dataclass
class BuildSummary:
    """What a build did.

    Args:
        store: the store's path or URL.
        n_samples: samples in the store's layout.
        n_pairs: view pairs per sample.
        present_before: samples already written (and intact) when this run started.
        written: samples written by this run.
        damaged: written blocks found damaged when this run started (rebuilt by it).
        failed: failed volumes: dicts with id, path, reason, blocks.
        seconds: wall time of this run, start-up included.
        timings: task seconds per stage (read, sample, drr, corr, write), summed over tasks;
            wall clock, CPU time under ``cpu_<stage>`` and minor page faults under
            ``faults_<stage>`` (see `drrgen.build.tasks.Clock`).
        complete: every block of the store is written.
        where: where the tasks ran.
        warm_s: seconds compiling or loading the kernels before the workers started
            (`drrgen.build.warm`; about 0.5 s when they are in Numba's cache).
        first_block_s: seconds from the start of this run until its first block was written
            (None: none was).
    """

    store: str
    n_samples: int
    n_pairs: int
    present_before: int = 0
    written: int = 0
    damaged: int = 0
    failed: list = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    complete: bool = False
    where: str = ""
    warm_s: float = 0.0
    first_block_s: float | None = None

    @property
    def samples_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        """A human-readable multi-line summary."""
        state = "complete" if self.complete else "INCOMPLETE"
        t = self.timings
        first = "" if self.first_block_s is None else f", first block {self.first_block_s:.1f} s"
        lines = [
            f"store      {self.store} ({state})",
            f"samples    {self.written} written now, {self.present_before} already present, "
            f"{self.present_before + self.written}/{self.n_samples} in the store",
            f"volumes    {len(self.failed)} failed",
            f"time       {self.seconds:.1f} s (kernel warm-up {self.warm_s:.1f} s{first}), "
            f"{self.samples_per_s:.1f} samples/s, {self.samples_per_s * self.n_pairs:.1f} pairs/s "
            f"({self.where})",
            "task time  "
            + ", ".join(f"{k} {t.get(k, 0.0):.2f}/{t.get('cpu_' + k, 0.0):.2f}" for k in STAGES)
            + " s (wall/cpu, summed over tasks)",
        ]
        if self.written:
            faults = sum(t.get(f"faults_{k}", 0.0) for k in STAGES if k != "read")
            lines.append(
                f"memory     {faults / self.written:.0f} minor page faults per sample after the "
                "CT reads (tens: each worker's first samples; thousands: freed memory goes "
                "back to the OS)"
            )
        if self.damaged:
            lines.insert(
                2, f"damaged    {self.damaged} block(s) failed their checks and were built again"
            )
        lines += [f"FAILED     {f['path']}: {f['reason']}" for f in self.failed]
        return "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def volume_table(sources: list[CTSource], hashes: list[str | None]) -> list[dict]:
    """The store's volume table; `INFO_KEYS` are filled in once a volume has been read."""
    return [
        {"id": i, "path": s.rel, "series_id": s.series_id, "sha256": h} | dict.fromkeys(INFO_KEYS)
        for i, (s, h) in enumerate(zip(sources, hashes, strict=True))
    ]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def incompatibilities(attrs: dict, cfg: BuildConfig, table: list[dict], done) -> list[str]:
    """Why an existing store cannot be resumed with these parameters and inputs.

    Args:
        attrs: the store's attributes.
        cfg: the parameters of this run.
        table: the volume table of this run (paths and sha256).
        done: (n_blocks,) bool written blocks of the store.

    Returns:
        One line per problem (empty: compatible).
    """
    problems = []
    old, new = _flatten(upgrade_params(attrs.get("params", {}))), _flatten(cfg.to_dict())
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            problems.append(f"{key}: store has {old.get(key)!r}, this run asks {new.get(key)!r}")
    before = [(v["path"], v.get("series_id")) for v in attrs.get("volumes", [])]
    now = [(v["path"], v["series_id"]) for v in table]
    if before != now:
        added = sorted({p for p, _ in now} - {p for p, _ in before})
        removed = sorted({p for p, _ in before} - {p for p, _ in now})
        problems.append(
            f"the CT folder holds other volumes than the store's "
            f"({len(before)} -> {len(now)}; added {added[:5]}, removed {removed[:5]})"
        )
        return problems
    layout = Layout.from_attrs(attrs)
    for v_old, v_new in zip(attrs["volumes"], table, strict=True):
        built = any(done[b] for b in layout.volume_blocks(v_new["id"]))
        if built and v_old.get("sha256") != v_new["sha256"]:
            problems.append(f"{v_new['path']} changed since its samples were built (sha256)")
    return problems


def base_attrs(cfg: BuildConfig, table: list[dict], ct_dir: str) -> dict:
    """The attributes a new store starts with."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "drrgen_version": _pkg_version("xmatch"),
        "params": cfg.to_dict(),
        "mu_water": cfg.mu_water,
        "air_threshold_hu": cfg.air_threshold_hu,
        "corr_definition": cfg.corr_definition,
        "patch": cfg.patch,
        "views": cfg.views,
        "size": cfg.size,
        "samples_per_ct": cfg.samples_per_ct,
        "block": cfg.block,
        "pairs": [list(p) for p in cfg.pairs],
        "pose_fields": list(POSE_FIELDS),
        "volumes": table,
        "failed": [],
        "complete": False,
        "ct_dir": ct_dir,
        "created": _now(),
        "updated": _now(),
    }


def prepare_store(
    out: str,
    cfg: BuildConfig,
    table: list[dict],
    ct_dir: str,
    overwrite: bool = False,
    storage_options: dict | None = None,
):
    """Open a store to resume, or create it. Returns (group, layout, done blocks).

    Raises:
        StoreError: the location holds something that is not a drrgen store, or a store built
            with other parameters or inputs (unless `overwrite`).
    """
    layout = Layout(len(table), cfg.samples_per_ct, cfg.block, cfg.views, cfg.size, cfg.patch)
    if not store_is_empty(out, storage_options):
        try:
            group = open_store(out, "r+", storage_options)
        except StoreError as exc:
            raise StoreError(
                f"{exc}. Refusing to write there (even with --overwrite): "
                "choose an empty or new --out"
            ) from exc
        if overwrite or is_partial(group):
            clear_store(out, storage_options)
        else:
            attrs = dict(group.attrs)
            done = written_blocks(group, Layout.from_attrs(attrs))
            problems = incompatibilities(attrs, cfg, table, done)
            if problems:
                raise StoreError(
                    f"{out} was built with other parameters or inputs:\n  - "
                    + "\n  - ".join(problems)
                    + "\nRerun with the store's parameters to resume it, choose another --out, "
                    "or add --overwrite to delete it and build from scratch."
                )
            for old, new in zip(attrs["volumes"], table, strict=True):
                for key in INFO_KEYS:
                    new[key] = new[key] or old.get(key)
            group.attrs.update({"volumes": table, "ct_dir": ct_dir, "updated": _now()})
            return group, layout, done
    group = create_store(out, layout, base_attrs(cfg, table, ct_dir), storage_options)
    return group, layout, written_blocks(group, layout)


def _run_tasks(runner: Runner, tasks: list[BlockTask], job: Job) -> Iterator[BlockResult]:
    """Results as blocks finish: on the Dask client, or one by one here when it is None.

    Raises:
        RuntimeError: the cluster had no worker for ``runner.no_workers_timeout_s``.
    """
    client = runner.client
    if client is None:
        for task in tasks:
            yield run_block(task, job)
        return
    from distributed import wait

    futures = client.map(run_block, tasks, job=job, pure=False, retries=2)
    by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    pending, no_workers_since = set(futures), None
    poll_s = min(5.0, (runner.no_workers_timeout_s or 10.0) / 2)
    while pending:
        try:
            done, pending = wait(pending, timeout=poll_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        if client.scheduler_info().get("workers"):
            no_workers_since = None
        elif no_workers_since is None:
            no_workers_since = time.monotonic()
        elif (
            runner.no_workers_timeout_s is not None
            and time.monotonic() - no_workers_since > runner.no_workers_timeout_s
        ):
            raise RuntimeError(
                f"no Dask worker for {runner.no_workers_timeout_s:.0f} s ({runner.where}); "
                "finished blocks are kept: rerun the same command to resume"
            )
        for future in done:
            yield _result(future, by_key[future.key])
            future.release()


def _result(future, task: BlockTask) -> BlockResult:
    """The task's result, or a failed `BlockResult` if the task itself was lost."""
    try:
        return future.result()
    except Exception as exc:  # worker died repeatedly, or the store could not be written
        error = f"task lost: {type(exc).__name__}: {exc}"
        return BlockResult(task.block, task.volume_id, False, task.path, error=error)


def build(
    ct_dir,
    out,
    cfg: BuildConfig | None = None,
    cluster: ClusterOptions | None = None,
    *,
    overwrite: bool = False,
    storage_options: dict | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    device: str | None = None,
) -> BuildSummary:
    """Build (or resume) a store of DRR samples and correspondence matrices.

    Args:
        ct_dir: folder searched recursively for CTs (NIfTI, NRRD, MetaImage, DICOM series).
        out: store path or fsspec URL (``s3://bucket/train.zarr``).
        cfg: build parameters (default `BuildConfig()`).
        cluster: where to run (default: a local cluster sized to the machine).
        overwrite: delete an existing drrgen store at `out` built with other parameters.
        storage_options: fsspec options for URL stores.
        progress: show a tqdm bar over samples.
        echo: where to print status lines.
        device: where DRRs are rendered: None (Numba, CPU) or a torch device such as "cuda"
            (`drrgen.project`). Not a build parameter: stores built on the GPU agree with CPU
            ones to <= 1e-5 relative, and a build is bitwise repeatable on one device.

    Returns:
        A `BuildSummary`; ``failed`` lists volumes that could not be built (their samples
        keep ``volume_id == -1``); rerunning the same call retries them and anything missing.

    Raises:
        FileNotFoundError: `ct_dir` is not a folder. ValueError: no CT found, bad parameters.
        StoreError: `out` cannot be used (see `prepare_store`). LockError (a StoreError):
            another build holds the store's lock (`drrgen.build.lock`).
        DeviceError (a UserError): `device` cannot be used here (e.g. CUDA without a GPU).
        UserError: the environment variable DRRGEN_LAYOUT or DRRGEN_PRECISION has no valid
            value.
    """
    t0 = time.perf_counter()
    parse_device(device)  # refuse a missing GPU before any work (tasks get the option as given)
    kernels.slices_inner()  # and a bad DRRGEN_LAYOUT or DRRGEN_PRECISION, which every task
    kernels.precision_choice()  # would fail on
    cfg = (cfg or BuildConfig()).validate()
    cluster = cluster or ClusterOptions()
    sources = discover_cts(ct_dir)
    if not sources:
        raise ValueError(
            f"{ct_dir}: no CT volumes found (NIfTI .nii/.nii.gz, NRRD, "
            "MetaImage .mha/.mhd or DICOM series folders, searched recursively)"
        )
    table = volume_table(sources, hash_sources(sources))
    out = str(out)
    with hold_lock(out, storage_options):
        group, layout, done = prepare_store(
            out, cfg, table, str(Path(ct_dir).resolve()), overwrite, storage_options
        )
        summary = BuildSummary(out, layout.n_samples, layout.n_pairs)
        summary.damaged = verify_written(group, layout, done, echo, progress)
        summary.present_before = int(done.sum()) * layout.block
        job = Job(out, storage_options, cfg.to_dict(), layout, device=device)
        _build_missing(group, job, done, sources, table, cluster, summary, echo, progress, t0)
    summary.seconds = time.perf_counter() - t0
    return summary


def repair_store(
    url: str,
    ct_dir=None,
    cluster: ClusterOptions | None = None,
    *,
    storage_options: dict | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> BuildSummary:
    """Rebuild a store's damaged and missing blocks: `build` with the store's own parameters.

    Args:
        url: store path or fsspec URL.
        ct_dir: the CT folder (default: the one recorded in the store, ``ct_dir``).
        cluster, storage_options, progress, echo: as for `build`.

    Raises:
        StoreError: not a drrgen store, or its CTs changed (see `build`).
    """
    attrs = dict(open_store(url, "r", storage_options).attrs)
    cfg = BuildConfig.from_dict(attrs["params"], source=f"{url} params")
    return build(
        ct_dir or attrs["ct_dir"],
        url,
        cfg,
        cluster,
        storage_options=storage_options,
        progress=progress,
        echo=echo,
    )


def verify_written(group, layout: Layout, done: np.ndarray, echo, progress: bool) -> int:
    """Check every written block; delete the damaged ones' shards so that they are rebuilt.

    Format 2 stores are checked against their checksums; a format 1 store (no checksums) is
    checked for fill values, its intact blocks get their checksums recorded and it becomes
    format 2. Prints one line per damaged block.

    Args:
        group: the store, writable.
        layout: its layout.
        done: (n_blocks,) bool written blocks; damaged ones are set False here.
        echo: where to print.
        progress: show a progress bar.

    Returns:
        The number of damaged blocks.
    """
    version = int(group.attrs["format_version"])
    if "checksum" not in group:
        create_arrays(group, layout, names=("checksum",))
    damaged = 0
    for b in tqdm(np.flatnonzero(done), desc="verify", unit="block", disable=not progress):
        b, sl = int(b), layout.block_samples(int(b))
        problems, data = check_written_block(group, layout, b, version)
        if problems:
            echo(
                f"damaged: block {b} (samples {sl.start}-{sl.stop - 1}): "
                + "; ".join(problems)
                + ": rebuilding it"
            )
            clear_block(group, layout, b)
            done[b] = False
            damaged += 1
        elif version < FORMAT_VERSION:
            group["checksum"][sl] = checksum_rows(data)
    if version < FORMAT_VERSION:
        group.attrs.update({"format_version": FORMAT_VERSION})
    return damaged


def _build_missing(group, job: Job, done, sources, table, cluster, summary, echo, progress, t0):
    """Run the blocks not `done`, then record failures and completeness in the attributes.

    Args:
        group: the store, writable.
        job: the tasks' shared settings (threads are set once the workers are known).
        done: (n_blocks,) bool blocks written and intact.
        sources: the CTs, in volume-table order.
        table: the volume table (updated with what the tasks report).
        cluster: where to run.
        summary: the `BuildSummary` to fill in.
        echo: where to print status lines.
        progress: show a progress bar.
        t0: `time.perf_counter` at the start of the run (for ``summary.first_block_s``).
    """
    layout = job.layout
    todo = [b for b in range(layout.n_blocks) if not done[b]]
    tasks = []
    for b in todo:
        vid, k = layout.block_volume(b)
        tasks.append(BlockTask(b, vid, k, str(sources[vid].path), sources[vid].series_id))
    echo(
        f"{len(sources)} volumes, {layout.n_blocks} blocks of {layout.block} samples: "
        f"{len(done) - len(todo)} done, {len(todo)} to build"
    )
    failures: dict[int, dict] = {}
    group.attrs.update({"complete": False, "failed": [], "updated": _now()})
    if tasks:
        summary.warm_s = _warm_up(job, cluster, echo)
        with open_client(cluster) as runner:
            summary.where = runner.where
            job = replace(job, threads=runner.threads)
            echo(f"running on {runner.where}")
            results = _run_tasks(runner, tasks, job)
            _consume(results, group, table, failures, summary, layout, progress, t0)
    summary.failed = sorted(failures.values(), key=lambda f: f["id"])
    summary.complete = bool(written_blocks(group, layout).all())
    group.attrs.update(
        {
            "volumes": table,
            "failed": summary.failed,
            "complete": summary.complete,
            "updated": _now(),
        }
    )


def _warm_up(job: Job, cluster, echo) -> float:
    """Compile the kernels here before local workers start, so they load them from the cache.

    Not for an external scheduler or SLURM: their workers may run on another CPU model
    (Numba's cache is per CPU), so the driver's compile could be for nothing. A failing
    warm-up only costs the workers their own compiles: one warning line, the build goes on.
    """
    if cluster.scheduler or cluster.slurm_config:
        return 0.0
    try:
        return warm_kernels(BuildConfig.from_dict(job.params), job.device, echo)
    except Exception as err:  # noqa: BLE001 - the workers will compile and report for real
        echo(f"warning: kernel warm-up failed ({type(err).__name__}: {err}); workers compile")
        return 0.0


def _consume(results, group, table, failures, summary, layout, progress, t0) -> None:
    """Track results: progress, volume info, failures (attributes flushed when they change)."""
    bar = tqdm(
        total=summary.n_samples - summary.present_before,
        unit="sample",
        desc="build",
        disable=not progress,
        smoothing=0.05,
        mininterval=0.5,
    )
    with bar:
        for res in results:
            entry = table[res.volume_id]
            changed = False
            if res.info and entry["shape"] is None:
                entry.update(res.info)
                changed = True
            if res.ok:
                if summary.first_block_s is None:
                    summary.first_block_s = time.perf_counter() - t0
                summary.written += layout.block
                for k, v in res.timings.items():
                    summary.timings[k] = summary.timings.get(k, 0.0) + v
            else:
                fail = failures.setdefault(
                    res.volume_id,
                    {"id": res.volume_id, "path": entry["path"], "reason": res.error, "blocks": []},
                )
                fail["blocks"].append(res.block)
                changed = True
            if changed:
                group.attrs.update(
                    {"volumes": table, "failed": list(failures.values()), "updated": _now()}
                )
            bar.update(layout.block)
            bar.set_postfix(failed_volumes=len(failures), refresh=False)
