"""Damaged stores: `drrgen build` and `drrgen verify --repair` find every damaged block (one
line each) and rebuild it to exactly what an undamaged build holds (issue 15)."""

import shutil

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from drrgen.build import BuildConfig, ClusterOptions, build
from drrgen.build.inspect import verify_store
from drrgen.cli import app
from drrgen.store_contract import ARRAY_NAMES

CFG = BuildConfig(samples_per_ct=4, block=2, size=32, patch=8, seed=3)  # 2 CTs: 4 blocks
IN_PROCESS = ClusterOptions(workers=0)


def _build(ct_dir, url, lines=None):
    echo = lines.append if lines is not None else (lambda s: None)
    return build(ct_dir, url, CFG, IN_PROCESS, progress=False, echo=echo)


def _arrays(url) -> dict:
    group = zarr.open_group(str(url), mode="r")
    return {name: group[name][:] for name in ARRAY_NAMES if name in group}


def _shard(url, name: str, block: int):
    ndim = zarr.open_array(str(url / name), mode="r").ndim
    return url.joinpath(name, "c", str(block), *["0"] * (ndim - 1))


@pytest.fixture(scope="module")
def clean(ct_dir, tmp_path_factory):
    url = tmp_path_factory.mktemp("clean") / "s.zarr"
    assert _build(ct_dir, url).complete
    return url


@pytest.fixture
def damaged(clean, tmp_path):
    """A copy with a deleted shard (block 0), a garbled one (block 1) and NaN (block 3)."""
    url = shutil.copytree(clean, tmp_path / "s.zarr")
    _shard(url, "views", 0).unlink()
    size = _shard(url, "corr", 1).stat().st_size
    _shard(url, "corr", 1).write_bytes(np.random.default_rng(0).bytes(size))
    group = zarr.open_group(str(url), mode="r+")
    views = group["views"][6:8]
    views[0, 1, 10, 10] = np.nan
    group["views"][6:8] = views
    return url


def test_build_rebuilds_exactly_the_damaged_blocks(ct_dir, clean, damaged):
    lines = []
    summary = _build(ct_dir, damaged, lines)
    assert summary.complete and summary.damaged == 3
    assert (summary.present_before, summary.written) == (2, 6)
    reported = [ln for ln in lines if ln.startswith("damaged: ")]
    assert [int(ln.split()[2]) for ln in reported] == [0, 1, 3]
    assert "views: missing or unreadable" in reported[0] and "corr: " in reported[1]
    assert "views: holds fill values (NaN or -1) where data was written" in reported[2]
    repaired, want = _arrays(damaged), _arrays(clean)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(repaired[name], want[name], err_msg=name)
    assert verify_store(str(damaged)).ok
    again = _build(ct_dir, damaged)
    assert (again.damaged, again.written) == (0, 0)


def test_verify_reports_one_line_per_block_then_repairs(damaged):
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(damaged), "--no-progress"])
    assert result.exit_code == 1
    blocks = [ln.split()[1] for ln in result.stdout.splitlines() if ln.startswith("  block ")]
    assert blocks == ["0", "1", "3"]
    assert f"repair: drrgen verify {damaged} --repair" in result.stdout
    result = runner.invoke(
        app, ["verify", str(damaged), "--repair", "--workers", "0", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "damaged    3 block(s) failed their checks and were built again" in result.stdout
    assert runner.invoke(app, ["verify", str(damaged), "--no-progress"]).exit_code == 0


def test_a_format_1_store_gets_checksums_and_its_nan_block_rebuilt(ct_dir, clean, tmp_path):
    url = shutil.copytree(clean, tmp_path / "old.zarr")
    shutil.rmtree(url / "checksum")  # as `drrgen build` wrote stores before format 2
    group = zarr.open_group(str(url), mode="r+")
    group.attrs["format_version"] = 1
    report = verify_store(str(url))
    assert report.ok and "without checksums" in report.notes[0]
    views = group["views"][4:6]
    views[1, 0, 3, 3] = np.nan
    group["views"][4:6] = views
    summary = _build(ct_dir, url)
    assert (summary.damaged, summary.written) == (1, 2) and summary.complete
    assert zarr.open_group(str(url), mode="r").attrs["format_version"] == 2
    upgraded, want = _arrays(url), _arrays(clean)
    for name in ARRAY_NAMES:  # the checksums recorded equal those a new build writes
        np.testing.assert_array_equal(upgraded[name], want[name], err_msg=name)
