"""Where the blocks run: a local Dask cluster, an existing scheduler, or SLURM (dask-jobqueue).

Workers run one task at a time (one Dask thread each); each task uses `threads` Numba threads,
so that workers x threads <= cores. The Numba threading layer is set to `omp` in workers:
the default `workqueue` layer aborts on concurrent use.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from drrgen.errors import UserError
from drrgen.typed_config import load_typed

SCHEDULER_TIMEOUT_S = 10  # how long --scheduler may take to answer


@dataclass(frozen=True)
class ClusterOptions:
    """How to get workers.

    Args:
        workers: local worker processes (None: cores // threads; 0: run in this process
            without Dask, for debugging).
        threads: Numba threads per worker (None: cores // workers, at least 1).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); overrides the
            local cluster.
        slurm_config: YAML file for a dask-jobqueue `SLURMCluster` (see pipelines/slurm/).
    """

    workers: int | None = None
    threads: int | None = None
    scheduler: str | None = None
    slurm_config: str | None = None


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_shape(workers: int | None, threads: int | None, cores: int | None = None):
    """(workers, threads) for a local cluster: by default one single-threaded worker per core.

    Warns when workers x threads exceeds the cores (the machine would be oversubscribed).
    """
    cores = cores or available_cores()
    if workers is None and threads is None:
        workers, threads = cores, 1
    elif workers is None:
        workers = max(1, cores // threads)
    elif threads is None:
        threads = max(1, cores // max(1, workers))
    if workers * threads > cores:
        warnings.warn(
            f"{workers} workers x {threads} threads exceed the {cores} cores: expect slowdown",
            stacklevel=2,
        )
    return workers, threads


def worker_env(threads: int) -> dict[str, str]:
    """Environment for worker processes: Numba thread count and a thread-safe layer."""
    layer = os.environ.get("NUMBA_THREADING_LAYER", "omp")
    return {
        "NUMBA_NUM_THREADS": str(threads),
        "NUMBA_THREADING_LAYER": layer,
        "OMP_NUM_THREADS": str(threads),
    }


@dataclass(frozen=True)
class SlurmConfig:
    """A SLURM build (``--slurm-config``, e.g. pipelines/slurm/slurm.yaml).

    Attributes:
        jobs: SLURM jobs to submit (``cluster.scale(jobs=...)``), >= 1.
        numba_threads: Numba threads per Dask worker, >= 1.
        cluster: keyword arguments of ``dask_jobqueue.SLURMCluster`` (queue, cores,
            processes, memory, walltime, ...; passed through as they are).
    """

    jobs: int = 1
    numba_threads: int = 1
    cluster: dict = field(default_factory=dict)

    def validate(self) -> SlurmConfig:
        """Check values; raise `ValueError` naming the key. Returns self."""
        if not self.cluster:
            raise ValueError("cluster: needs a mapping of SLURMCluster arguments")
        if self.jobs < 1 or self.numba_threads < 1:
            raise ValueError(
                f"jobs and numba_threads must be >= 1, got {self.jobs}, {self.numba_threads}"
            )
        return self


def load_slurm_config(path, overrides: list[str] | None = None) -> SlurmConfig:
    """The checked `SlurmConfig` of a YAML file (the one configuration system:
    ``defaults:`` includes and ``key=value`` overrides as for every config).

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, ill-typed or out-of-range value
            (names the file and the key).
    """
    return load_typed(SlurmConfig, path, overrides, SlurmConfig.validate)


def slurm_cluster(config: SlurmConfig):
    """A dask-jobqueue `SLURMCluster` (no job submitted yet; call `.scale(jobs=...)`).

    Numba settings are added to the job script's prologue. `cluster.job_script()` renders the
    batch script without SLURM.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise RuntimeError("SLURM needs dask-jobqueue: pip install 'xmatch[cluster]'") from exc
    kwargs = dict(config.cluster)
    env = worker_env(config.numba_threads)
    prologue = list(kwargs.pop("job_script_prologue", []) or [])
    prologue += [f"export {k}={v}" for k, v in env.items()]
    kwargs.setdefault("silence_logs", "warning")
    return SLURMCluster(job_script_prologue=prologue, **kwargs)


@dataclass(frozen=True)
class Runner:
    """Where a build's tasks go.

    Args:
        client: a Dask client, or None to run the tasks in this process.
        threads: Numba threads per task (None: the workers' default).
        where: one line for users.
        no_workers_timeout_s: give up after this long without any worker (None: wait forever,
            e.g. for SLURM jobs waiting in the queue).
    """

    client: object | None
    threads: int | None
    where: str
    no_workers_timeout_s: float | None = None


LOCAL_NO_WORKERS_TIMEOUT_S = 120.0


class _QuietSyncCancel(logging.Filter):
    """Drop tornado's log of distributed's `sync` cancel callback failing on Ctrl-C.

    distributed (2026.8) schedules `cancel` when Ctrl-C interrupts a blocking client call; if
    that comes before the call's future exists, `cancel` raises NameError and tornado logs it
    with a traceback (about 1 Ctrl-C in 10 in tests). Nothing is lost: the command then reports
    what was kept, so the user should see that line only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "sync.<locals>.cancel" not in record.getMessage()


def _quiet_sync_cancel() -> None:
    """Install `_QuietSyncCancel` on tornado's logger, once per process (kept: the callback can
    run on the event loop's thread after the client is closed)."""
    logger = logging.getLogger("tornado.application")
    if not any(isinstance(f, _QuietSyncCancel) for f in logger.filters):
        logger.addFilter(_QuietSyncCancel())


@contextmanager
def _workers_ignore_ctrl_c():
    """Start local worker processes with SIGINT ignored (they inherit it).

    Ctrl-C in a terminal goes to the whole process group: without this every worker dies with
    its own KeyboardInterrupt traceback while this process shuts the cluster down. With it only
    this process is interrupted; it closes the cluster and the command reports what was kept.
    (A Ctrl-C while the workers start is ignored.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def open_client(opts: ClusterOptions):
    """Yield a `Runner` for the options.

    The client is None for ``workers == 0`` (run in this process). Clusters started here are
    closed on exit; an external scheduler is left running.
    """
    _quiet_sync_cancel()
    with _open_client(opts) as runner:
        yield runner


@contextmanager
def _open_client(opts: ClusterOptions):
    from distributed import Client, LocalCluster

    if opts.scheduler:
        try:
            client = Client(opts.scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise UserError(
                f"{opts.scheduler}: no Dask scheduler answered within {SCHEDULER_TIMEOUT_S} s "
                f"({type(err).__name__}); check --scheduler"
            ) from None
        with client:
            yield Runner(client, opts.threads, f"Dask scheduler {opts.scheduler}")
        return
    if opts.slurm_config:
        config = load_slurm_config(opts.slurm_config)
        with slurm_cluster(config) as cluster, Client(cluster) as client:
            cluster.scale(jobs=config.jobs)
            yield Runner(client, config.numba_threads, f"SLURM, {config.jobs} jobs")
        return
    if opts.workers == 0:
        yield Runner(None, opts.threads, "in this process (no Dask)")
        return
    workers, threads = local_shape(opts.workers, opts.threads)
    with _workers_ignore_ctrl_c():
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            env=worker_env(threads),
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    with cluster, Client(cluster) as client:
        where = f"local Dask cluster, {workers} workers x {threads} threads"
        yield Runner(client, threads, where, LOCAL_NO_WORKERS_TIMEOUT_S)
