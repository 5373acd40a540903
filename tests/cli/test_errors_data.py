"""`drrgen phantom`, `drrgen data` and `drrgen fracture`: input mistakes are one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from drrgen.cli import app

from .conftest import assert_user_error


def _cases(tmp: Path, a_file: Path) -> dict[str, tuple[list[str], list[str]]]:
    return {
        "phantom: out is a file": (
            ["phantom", "--out", str(a_file), "--count", "1"],
            [str(a_file), "--out", "folder"],
        ),
        "phantom: count 0": (["phantom", "--out", str(tmp / "p"), "--count", "0"], ["--count"]),
        "phantom: unknown kind": (
            ["phantom", "--out", str(tmp / "p"), "--kind", "tail"],
            ["--kind", "tail"],
        ),
        "phantom: shape not integers": (
            ["phantom", "--out", str(tmp / "p"), "--shape", "8", "8", "x"],
            ["--shape"],
        ),
        "data: out is a file": (
            ["data", "--out", str(a_file), "--phantoms", "1", "--no-cxr"],
            [str(a_file), "--out"],
        ),
        "fracture: out is a file": (
            ["fracture", "--out", str(a_file), "phantoms=3"],
            [str(a_file), "--out"],
        ),
        "fracture: one phantom leaves the test split empty": (
            ["fracture", "--out", str(tmp / "fx"), "phantoms=1", "views.size=32"],
            ["phantoms=1", "1 volume", "train, val and test", "at least 3 volumes"],
        ),
        "fracture: two phantoms": (
            ["fracture", "--out", str(tmp / "fx"), "phantoms=2", "views.size=32"],
            ["phantoms=2", "at least 3 volumes"],
        ),
        "fracture: unknown kind": (
            ["fracture", "--out", str(tmp / "fx"), "phantom_kinds=[tail]", "phantoms=3"],
            ["phantom_kinds"],
        ),
    }


@pytest.mark.parametrize("name", list(_cases(Path("t"), Path("f"))))
def test_bad_input_is_one_line_and_exit_2(name, tmp_path, a_file):
    args, names = _cases(tmp_path, a_file)[name]
    result = CliRunner().invoke(app, args)
    assert_user_error(result, *names)
    assert not (tmp_path / "p").exists() and not (tmp_path / "fx").exists()
