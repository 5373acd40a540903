"""Start-up and help: ``drrgen --help`` loads none of the heavy libraries, and every command's
help is readable at 80 columns (no option name cut)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from drrgen.cli import app as drrgen_app
from xmatch_train.cli import app as xmatch_app

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numba", "numpy", "SimpleITK", "zarr", "dask", "torch", "matplotlib", "scipy")


def _commands():
    for name, app in (("drrgen", drrgen_app), ("xmatch", xmatch_app)):
        group = get_command(app)
        for command in group.commands.values():
            yield f"{name} {command.name}", app, command


COMMANDS = list(_commands())


@pytest.mark.parametrize("label, app, command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_help_at_80_columns_names_every_option_in_full(label, app, command):
    result = CliRunner().invoke(app, [command.name, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text
    for param in command.params:
        for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            if opt.startswith("-"):
                assert opt in text, (label, opt)


def _modules_after(code: str) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return set(done.stdout.splitlines()[-1].split()) if done.stdout.strip() else set()


def _run(cli: str, *args: str) -> str:
    return f"from {cli} import app\ntry:\n    app({list(args)!r})\nexcept SystemExit:\n    pass"


def test_drrgen_help_loads_no_heavy_library():
    assert _modules_after(_run("drrgen.cli", "--help")) == set()


def test_drrgen_info_loads_no_numba_nor_torch(tmp_path):
    loaded = _modules_after(_run("drrgen.cli", "info", str(tmp_path / "none.zarr")))
    assert not loaded & {"numba", "torch", "SimpleITK", "matplotlib"}, loaded


def test_xmatch_help_loads_no_heavy_library():
    assert _modules_after(_run("xmatch_train.cli", "--help")) == set()


def test_the_cli_list_of_phantom_kinds_is_the_layouts():
    from drrgen.phantoms.anatomy import LAYOUTS
    from drrgen.phantoms.kinds import KINDS

    assert tuple(LAYOUTS) == KINDS
