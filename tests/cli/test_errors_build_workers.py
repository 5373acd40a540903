"""`drrgen build` / `drrgen verify --repair`: a negative worker count (or zero threads) is one
line, exit 2, and nothing is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from drrgen.cli import app

from .conftest import assert_user_error


@pytest.mark.parametrize("option, value", [("--workers", "-1"), ("--threads", "0")])
def test_build_refuses_out_of_range_counts(tmp_path, option, value):
    (tmp_path / "cts").mkdir()
    out = tmp_path / "s.zarr"
    args = ["build", "--ct-dir", str(tmp_path / "cts"), "--out", str(out), option, value]
    assert_user_error(CliRunner().invoke(app, args), option)
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--workers", "-1"), ("--threads", "0")])
def test_verify_repair_refuses_out_of_range_counts(tmp_path, option, value):
    args = ["verify", str(tmp_path / "s.zarr"), "--repair", option, value]
    assert_user_error(CliRunner().invoke(app, args), option)
