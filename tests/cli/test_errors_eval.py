"""`xmatch eval`: mistakes are one line, exit 2; a good evaluation shows progress and says
where it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.config import from_dict
from xmatch_train.testing import write_toy_store

from .conftest import assert_user_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-step run on a 64 px / 16 px-patch toy store, and stores of other layouts."""
    from xmatch_train.config import PretrainConfig
    from xmatch_train.pretrain import pretrain

    root = tmp_path_factory.mktemp("eval")
    stores = {
        "own": write_toy_store(root / "own.zarr", n_volumes=3, samples_per_volume=2, block=2),
        # 32 px views with 8 px patches: the same 4 x 4 grid, but the run's CNN (stride 16)
        # sees a 2 x 2 one
        "small": write_toy_store(
            root / "small.zarr", n_volumes=1, samples_per_volume=2, block=2, size=32, patch=8
        ),
        "fine": write_toy_store(
            root / "fine.zarr", n_volumes=1, samples_per_volume=2, block=2, patch=8
        ),  # 8 x 8 grid
    }
    cfg = {
        "run_dir": str(root / "run"),
        "data": {"stores": [str(stores["own"])], "batch_size": 2, "num_workers": 0, "buffer": 2},
        "model": {
            "name": "transformer",
            "backbone": "convstem",
            "width": 16,
            "depth": 1,
            "heads": 2,
            "mlp_dim": 16,
        },
        "train": {"steps": 1, "val_every": 0, "val_batches": 1, "threads": 1, "log_every": 1},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pretrain(from_dict(PretrainConfig, cfg))
    finally:
        torch.set_num_threads(threads)
    return root / "run", stores


def _eval(run: Path, out: Path, *stores: Path, more=()):
    args = ["eval", "--run", str(run), "--out", str(out), "--workers", "0", "--figures", "0"]
    for store in stores:
        args += ["--store", str(store)]
    return CliRunner().invoke(app, [*args, *more])


def test_another_patch_grid_is_explained(trained, tmp_path):
    run, stores = trained
    result = _eval(run, tmp_path / "e", stores["small"], more=["--split", "all"])
    assert_user_error(result, str(stores["small"]), "4x4 patch grid", "2x2 token grid", str(run))


def test_another_patch_count_is_explained(trained, tmp_path):
    run, stores = trained
    result = _eval(run, tmp_path / "e", stores["fine"], more=["--split", "all"])
    assert_user_error(result, str(stores["fine"]), "patch grid (8, 8)", str(run))


def test_out_is_a_file(trained, a_file):
    run, stores = trained
    assert_user_error(_eval(run, a_file, stores["own"]), str(a_file), "--out", "folder")


def test_no_store(trained, tmp_path):
    run, _ = trained
    assert_user_error(_eval(run, tmp_path / "e"), "--store")


def test_missing_run_and_store(trained, tmp_path):
    run, stores = trained
    assert_user_error(_eval(tmp_path / "norun", tmp_path / "e", stores["own"]), "norun")
    assert_user_error(_eval(run, tmp_path / "e", tmp_path / "none.zarr"), "none.zarr")


def test_a_good_evaluation_shows_progress_and_the_output_paths(trained, tmp_path):
    run, stores = trained
    out = tmp_path / "e"
    result = _eval(run, out, stores["own"])
    assert result.exit_code == 0, result.output
    assert "eval run" in result.stderr and "100%" in result.stderr  # the tqdm bar
    assert f"wrote {out / 'table.md'}, {out / 'metrics.json'}" in result.stdout
    assert (out / "table.md").is_file() and (out / "metrics.json").is_file()
