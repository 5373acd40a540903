"""`drrgen build/info/verify/show` from the command line."""

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from drrgen.cli import app

ARGS = ["samples_per_ct=2", "block=2", "size=32", "patch=8"]


@pytest.fixture(scope="module")
def store(ct_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "s.zarr"
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--ct-dir",
            str(ct_dir),
            "--out",
            str(out),
            *ARGS,
            "views=3",
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "samples    4 written now" in result.stdout and "pairs/s" in result.stdout
    return out


def test_config_file_and_overrides(ct_dir, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("size: 64\npatch: 16\nsamples_per_ct: 2\nblock: 2\nseed: 5\n", encoding="utf-8")
    out = tmp_path / "o.zarr"
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--ct-dir",
            str(ct_dir),
            "--out",
            str(out),
            "--config",
            str(cfg),
            "size=32",
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    params = zarr.open_group(str(out), mode="r").attrs["params"]
    assert (params["size"], params["patch"], params["seed"]) == (32, 16, 5)


def test_bad_option_values_exit_2(ct_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--ct-dir",
            str(ct_dir),
            "--out",
            str(tmp_path / "x.zarr"),
            "size=30",
            "patch=8",
        ],
    )
    assert result.exit_code == 2 and "multiple of patch=" in result.stderr


def test_info(store):
    result = CliRunner().invoke(app, ["info", str(store), "--volumes"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "complete: 4/4 samples written" in out
    assert "3 views of 32x32 px; 3 pair(s) [[0, 1], [0, 2], [1, 2]]" in out
    assert "a/ct0.nii.gz" in out and "b/ct1.mha" in out and "32x36x40 voxels" in out


def test_verify(store):
    result = CliRunner().invoke(app, ["verify", str(store), "--no-progress"])
    assert result.exit_code == 0 and "OK (2 blocks checked)" in result.stdout


def test_show_writes_a_figure(store, tmp_path):
    fig = tmp_path / "fig.png"
    result = CliRunner().invoke(app, ["show", str(store), "--index", "3", "--out", str(fig)])
    assert result.exit_code == 0, result.output
    img = mpimg.imread(fig)
    assert img.shape[0] > 500 and img.shape[1] > 900 and np.ptp(img[..., :3]) > 0.5
    result = CliRunner().invoke(app, ["show", str(store), "--index", "9", "--out", str(fig)])
    assert result.exit_code == 2 and "out of range" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")
def test_device_cuda_without_a_gpu_is_refused_in_one_line(ct_dir, tmp_path):
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(ct_dir), "--out", str(out), *ARGS, "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: device cuda: CUDA is not available (no GPU visible)"
    assert not out.exists()


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("DRRGEN_LAYOUT", "columns", "must be 'auto', 'rows' or 'slices', not 'columns'"),
        ("DRRGEN_PRECISION", "half", "must be 'auto' or 'float32', not 'half'"),
    ],
)
def test_a_bad_projector_setting_in_the_environment_is_refused_before_any_work(
    ct_dir, tmp_path, monkeypatch, name, value, expected
):
    monkeypatch.setenv(name, value)
    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["build", "--ct-dir", str(ct_dir), "--out", str(out), *ARGS])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {name}: {expected}"
    assert not out.exists()
