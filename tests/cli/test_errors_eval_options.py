"""`xmatch eval`: out-of-range numeric options are one line, exit 2 (before any run is read)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xmatch_train.cli import app

from .conftest import assert_user_error


@pytest.mark.parametrize(
    "option, value",
    [("--batch-size", "0"), ("--batch-size", "-3"), ("--workers", "-1"), ("--max-batches", "0")],
)
def test_out_of_range_options_are_refused(tmp_path, option, value):
    args = ["eval", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args + [option, value])
    assert_user_error(result, option)
    assert not (tmp_path / "out").exists()
