"""`warm_kernels` leaves nothing for the workers to compile (fresh Numba cache, two processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import drrgen

ROOT = Path(drrgen.__file__).resolve().parents[1]

WARM = """
import json, sys
from drrgen.build.config import BuildConfig
from drrgen.build.warm import warm_kernels
warm_kernels(BuildConfig.from_dict(json.loads(sys.argv[1])).validate())
"""

# A worker's first task in a fresh process: one block of a real CT file into a real store,
# then how many kernels came from the cache (hits) and how many were compiled (misses).
TASK = """
import json, sys
from numba.core.dispatcher import Dispatcher
import drrgen.correspondence.accumulate, drrgen.correspondence.coarse
import drrgen.correspondence.footprint, drrgen.projector.kernels
from drrgen.build.config import BuildConfig
from drrgen.build.pipeline import prepare_store, volume_table
from drrgen.build.tasks import BlockTask, Job, run_block
from drrgen.volume.discover import discover_cts, hash_sources

ct_dir, out, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = BuildConfig.from_dict(params).validate()
sources = discover_cts(ct_dir)
group, layout, _ = prepare_store(out, cfg, volume_table(sources, hash_sources(sources)), ct_dir)
res = run_block(BlockTask(0, 0, 0, str(sources[0].path)), Job(out, None, params, layout, 1))
assert res.ok, res.error
modules = [drrgen.correspondence.accumulate, drrgen.correspondence.coarse,
           drrgen.correspondence.footprint, drrgen.projector.kernels]
kernels = [k for m in modules for k in vars(m).values() if isinstance(k, Dispatcher)]
print(json.dumps({
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": {k.py_func.__name__: sum(k.stats.cache_misses.values())
               for k in kernels if k.stats.cache_misses},
}))
"""


def _cache_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.nb*")}


def _run(code: str, *args: str, cache: Path) -> str:
    env = os.environ | {
        "NUMBA_CACHE_DIR": str(cache),
        "NUMBA_NUM_THREADS": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # two fresh compiles of every kernel: about 30 s
def test_warm_kernels_leave_nothing_for_a_worker_to_compile(ct_dir, tiny_cfg, tmp_path):
    cache = tmp_path / "numba"
    cache.mkdir()
    # the tiny config differs from the warm-up's own (volume, detector size, block)
    params = json.dumps({**tiny_cfg.to_dict(), "corr_definition": "peak"})
    _run(WARM, params, cache=cache)
    after_warm = _cache_files(cache)
    assert after_warm, "the warm-up wrote nothing to NUMBA_CACHE_DIR"
    out = _run(TASK, str(ct_dir), str(tmp_path / "s.zarr"), params, cache=cache)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["misses"] == {}, f"compiled in the worker: {stats['misses']}"
    assert stats["hits"] > 0
    assert _cache_files(cache) == after_warm
