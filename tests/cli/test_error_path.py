"""The one error path of both command lines (`drrgen.clikit`): mistakes are one line and exit
2, bugs keep their traceback, Ctrl-C is one line and exit 130."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from drrgen.build.config import BuildConfig
from drrgen.clikit import make_app, on_interrupt, user_error_message
from drrgen.errors import UserError

from .conftest import assert_user_error

ROOT = Path(__file__).resolve().parents[2]


def _app_raising(make_error):
    """An app made like `drrgen`'s and `xmatch`'s whose command runs `make_error()`."""
    app = make_app("demo", "A demo.")

    @app.command()
    def go(ctx: typer.Context) -> None:
        on_interrupt(ctx, lambda: "3/8 blocks kept; rerun: demo go")
        make_error()

    @app.command()
    def other() -> None:
        pass

    return app


def _numpy_broadcast():
    return np.zeros(3) + np.zeros(4)


def _value_error_raised_outside_the_packages():
    raise ValueError("raised in tests/, not by drrgen or xmatch_train")


def _ctrl_c():
    raise KeyboardInterrupt


def _user_error():
    raise UserError("--x 3: too big")


def _runtime_error():
    raise RuntimeError("bug")


MISTAKES = {
    "UserError": (_user_error, ["--x 3: too big"]),
    "ValueError raised by a package check": (
        lambda: BuildConfig(views=1).validate(),
        ["views must be >= 2"],
    ),
    "file named by an OSError": (
        lambda: open("/nonexistent/input.txt"),  # noqa: SIM115
        ["/nonexistent/input.txt: no such file or directory"],
    ),
}
BUGS = {
    "ValueError inside NumPy": (_numpy_broadcast, ValueError),
    "ValueError raised outside the packages": (
        _value_error_raised_outside_the_packages,
        ValueError,
    ),
    "TypeError": (lambda: len(5), TypeError),
    "RuntimeError": (_runtime_error, RuntimeError),
    "KeyError": (lambda: {}["k"], KeyError),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_a_mistake_is_one_line_and_exit_2(name):
    make_error, names = MISTAKES[name]
    assert_user_error(CliRunner().invoke(_app_raising(make_error), ["go"]), *names)


@pytest.mark.parametrize("name", BUGS)
def test_a_bug_keeps_its_exception(name):
    make_error, kind = BUGS[name]
    result = CliRunner().invoke(_app_raising(make_error), ["go"])
    assert result.exit_code == 1 and type(result.exception) is kind
    assert "error:" not in result.output


def test_a_bug_prints_its_traceback_in_a_real_process(tmp_path):
    script = tmp_path / "demo.py"
    script.write_text(
        "import numpy as np\n"
        "from drrgen.clikit import make_app\n"
        "app = make_app('demo', 'A demo.')\n"
        "@app.command()\n"
        "def go():\n"
        "    np.zeros(3) + np.zeros(4)\n"
        "@app.command()\n"
        "def other():\n"
        "    pass\n"
        "app()\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script), "go"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "operands could not be broadcast" in done.stderr and "error:" not in done.stderr


def test_debug_variable_shows_the_traceback_of_a_mistake(monkeypatch):
    monkeypatch.setenv("XMATCH_DEBUG", "1")
    result = CliRunner().invoke(_app_raising(lambda: BuildConfig(views=1).validate()), ["go"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_ctrl_c_is_one_line_with_the_commands_hint_and_exit_130():
    result = CliRunner().invoke(_app_raising(_ctrl_c), ["go"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: 3/8 blocks kept; rerun: demo go"


def test_a_malformed_command_line_is_one_line_pointing_at_help():
    result = CliRunner().invoke(_app_raising(lambda: None), ["go", "--bogus"])
    assert_user_error(result, "--bogus", "--help")
    result = CliRunner().invoke(_app_raising(lambda: None), ["nosuch"])
    assert_user_error(result, "nosuch")


def test_what_counts_as_a_mistake():
    try:
        BuildConfig(size=30, patch=8).validate()
    except ValueError as err:
        assert "size=30" in user_error_message(err)
    try:
        _numpy_broadcast()
    except ValueError as err:
        assert user_error_message(err) is None


def test_a_user_error_re_raised_by_a_loader_worker_keeps_its_own_message():
    from drrgen.store_contract import StoreError

    wrapped = StoreError(
        "Caught StoreError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        f'call last):\n  File "{ROOT}/drrgen/x.py", line 3, in f\n    raise StoreError(msg)\n'
        "drrgen.store_contract.StoreError: s.zarr: block 2 is damaged: views: missing\n"
    )
    assert user_error_message(wrapped) == "s.zarr: block 2 is damaged: views: missing"
    bug = ValueError(str(wrapped).replace("raise StoreError(msg)", "x = int(s)"))
    assert user_error_message(bug) is None  # a failed operation in the worker: a bug
