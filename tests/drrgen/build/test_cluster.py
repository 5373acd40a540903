import logging
from pathlib import Path

import pytest

from drrgen.build.cluster import (
    ClusterOptions,
    load_slurm_config,
    local_shape,
    open_client,
    slurm_cluster,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[3]


def test_local_shape_never_oversubscribes_by_default():
    assert local_shape(None, None, cores=8) == (8, 1)
    assert local_shape(None, 2, cores=8) == (4, 2)
    assert local_shape(2, None, cores=8) == (2, 4)
    with pytest.warns(UserWarning, match="exceed the 2 cores"):
        local_shape(2, 2, cores=2)


def test_worker_env_sets_numba_threads_and_a_thread_safe_layer(monkeypatch):
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    env = worker_env(3)
    assert env["NUMBA_NUM_THREADS"] == "3" and env["NUMBA_THREADING_LAYER"] == "omp"


def test_example_slurm_config_renders_a_job_script(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.chdir(tmp_path)  # the cluster creates its log folder here
    config = load_slurm_config(ROOT / "pipelines" / "slurm" / "slurm.yaml")
    assert (config.jobs, config.numba_threads, config.cluster["cores"]) == (4, 1, 16)
    cluster = slurm_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p cpu" in script and "#SBATCH --cpus-per-task=16" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "export NUMBA_THREADING_LAYER=omp" in script
    assert "export NUMBA_NUM_THREADS=1" in script
    assert "--nthreads 1" in script and "--nworkers 16" in script
    assert script.index("source $HOME/xmatch/.venv/bin/activate") < script.index("dask_worker")


def test_bad_slurm_config_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("jobs: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="s.yaml: cluster: needs a mapping"):
        load_slurm_config(path)
    path.write_text("jobs: many\ncluster: {cores: 4}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="s.yaml: jobs: expected an integer, got 'many'"):
        load_slurm_config(path)


def test_the_sync_cancel_traceback_is_dropped_and_other_errors_are_kept(caplog):
    # Ctrl-C during a blocking Dask call: distributed's failing cancel callback is not shown.
    with open_client(ClusterOptions(workers=0)):
        pass
    logger = logging.getLogger("tornado.application")
    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        logger.error("Exception in callback partial(<function sync.<locals>.cancel at 0x1>)")
        logger.error("Exception in callback something else")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Exception in callback something else"]
