"""`drrgen build` and the store commands: input mistakes are one line, exit 2; Ctrl-C says
what was kept and how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drrgen.cli import app
from drrgen.volume import write_ct

from .conftest import assert_user_error, tiny_volume

ROOT = Path(__file__).resolve().parents[2]
TINY = ["samples_per_ct=2", "block=2", "size=32", "patch=8", "--workers", "0"]

# name -> (YAML of --config, substrings of the message besides the config's path)
CONFIGS = {
    "float for an int": ("samples_per_ct: 4.5\n", ["samples_per_ct", "an integer", "4.5"]),
    "bool for an int": ("views: true\n", ["views", "an integer", "True"]),
    "word for an int": ("samples_per_ct: four\n", ["samples_per_ct", "an integer", "'four'"]),
    "scalar for a range": (
        "sampling:\n  crop_fraction: 0.5\n",
        ["sampling.crop_fraction", "a list of 2 numbers", "0.5"],
    ),
    "scalar distance range": (
        "sampling:\n  source_to_isocenter_mm: 1000\n",
        ["sampling.source_to_isocenter_mm", "a list of 2 numbers"],
    ),
    "three values for a range": (
        "sampling:\n  fill_fraction: [0.1, 0.2, 0.3]\n",
        ["sampling.fill_fraction", "a list of 2 numbers"],
    ),
    "word for a number": ("mu_water: lots\n", ["mu_water", "a number", "'lots'"]),
    "number for a flag-like string": ("corr_definition: [paper]\n", ["corr_definition"]),
    "unknown key": ("sise: 64\n", ["unknown key", "sise"]),
    "not a mapping": ("- 1\n- 2\n", ["mapping"]),
    "invalid YAML": ("size: [1, 2\n", ["invalid YAML"]),
}


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cts")
    write_ct(tiny_volume(), root / "tiny.nii.gz")
    return root


@pytest.mark.parametrize("name", CONFIGS)
def test_config_values_are_checked_naming_file_key_and_type(name, ct_dir, tmp_path):
    text, names = CONFIGS[name]
    config = tmp_path / "build.yaml"
    config.write_text(text, encoding="utf-8")
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(ct_dir), "--out", str(out), "--config", str(config)]
    result = CliRunner().invoke(app, args)
    assert_user_error(result, str(config), *names)
    assert not out.exists()


def _cases(ct_dir: Path, tmp: Path, a_file: Path) -> dict[str, tuple[list[str], list[str]]]:
    out = str(tmp / "s.zarr")
    build = ["build", "--ct-dir", str(ct_dir), "--out", out, *TINY]
    return {
        "out is a file": (
            ["build", "--ct-dir", str(ct_dir), "--out", str(a_file), *TINY],
            [str(a_file), "--out", "folder"],
        ),
        "ct-dir missing": (
            ["build", "--ct-dir", str(tmp / "nope"), "--out", out, *TINY],
            [str(tmp / "nope")],
        ),
        "ct-dir without CTs": (
            ["build", "--ct-dir", str(tmp), "--out", out, *TINY],
            [str(tmp), "no CT volumes"],
        ),
        "size not a multiple of patch": ([*build, "size=30"], ["size=30", "patch=8"]),
        "one view": ([*build, "views=1"], ["views must be >= 2"]),
        "storage options not JSON": (
            [*build, "--storage-options", "{bad"],
            ["--storage-options {bad", "not JSON"],
        ),
        "config file missing": (
            [*build, "--config", str(tmp / "absent.yaml")],
            [str(tmp / "absent.yaml"), "cannot read"],
        ),
        "info: no store": (["info", str(tmp / "none.zarr")], [str(tmp / "none.zarr")]),
        "verify: no store": (["verify", str(tmp / "none.zarr")], [str(tmp / "none.zarr")]),
        "show: no store": (["show", str(tmp / "none.zarr")], [str(tmp / "none.zarr")]),
        "option value not a number": (
            [*build, "sampling.source_to_isocenter_mm=[far,1100]"],
            ["sampling.source_to_isocenter_mm[0]", "far"],
        ),
    }


CASE_NAMES = list(_cases(Path("c"), Path("t"), Path("f")))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_line_and_exit_2(name, ct_dir, tmp_path, a_file):
    args, names = _cases(ct_dir, tmp_path, a_file)[name]
    result = CliRunner().invoke(app, args)
    assert_user_error(result, *names)
    assert not (tmp_path / "s.zarr").exists()


def _interrupt(args: list[str], out: Path) -> subprocess.CompletedProcess:
    """Run ``drrgen build`` in a new process group and press Ctrl-C (SIGINT to the group, as a
    terminal does) once it has written a block."""
    from drrgen.build.store import StoreError, open_store
    from drrgen.store_contract import written_blocks

    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from drrgen.cli import app; app(prog_name='drrgen')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--no-progress"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if written_blocks(open_store(str(out))).any():
                    break
            except (StoreError, KeyError, ValueError):  # not created yet
                pass
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out_text, err_text = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err_text)


def _check_interrupted(done: subprocess.CompletedProcess, out: Path) -> None:
    from drrgen.build.store import open_store
    from drrgen.store_contract import written_blocks

    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    written = written_blocks(open_store(str(out)))
    assert 0 < written.sum() < written.size  # kept, and not finished
    assert last.startswith(f"interrupted: {written.sum()}/{written.size} blocks are written in")
    assert not open_store(str(out)).attrs["failed"]  # Ctrl-C is nobody's fault
    assert "kept; rerun the same command to resume: drrgen build --ct-dir" in last
    assert f"--out {out}" in last


def test_the_ctrl_c_line_counts_the_kept_blocks_and_gives_the_command(ct_dir, tmp_path):
    """The hint `build` registers for Ctrl-C (`drrgen.clikit.on_interrupt`), on a real store;
    the real SIGINT tests below are `slow` (each needs a fresh interpreter and Numba: ~6 s)."""
    from drrgen.cli.commands_build import _interrupted

    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["build", "--ct-dir", str(ct_dir), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    line = _interrupted(str(out), None, "drrgen build --out s.zarr")
    assert line == (
        f"1/1 blocks are written in {out} and kept; rerun the same command to resume: "
        "drrgen build --out s.zarr"
    )
    line = _interrupted(str(tmp_path / "none.zarr"), None, "drrgen build")
    assert line.startswith(f"blocks already written in {tmp_path / 'none.zarr'} (if any) are kept")


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_resume(ct_dir, tmp_path):
    """A real SIGINT to a real build (in-process blocks, --workers 0)."""
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(ct_dir), "--out", str(out), "size=32", "patch=8"]
    done = _interrupt([*args, "samples_per_ct=4096", "block=2", "--workers", "0"], out)
    _check_interrupted(done, out)


@pytest.mark.slow
def test_ctrl_c_with_dask_workers_prints_no_worker_tracebacks(ct_dir, tmp_path):
    """The local Dask workers ignore SIGINT: only the main process is interrupted."""
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(ct_dir), "--out", str(out), "size=32", "patch=8"]
    more = ["samples_per_ct=4096", "block=2", "--workers", "2", "--threads", "1"]
    done = _interrupt([*args, *more], out)
    _check_interrupted(done, out)
    assert "KeyboardInterrupt" not in done.stderr, done.stderr
