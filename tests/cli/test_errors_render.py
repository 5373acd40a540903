"""`drrgen render`: every input mistake is one line ``error: <input>: <reason>``, exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from drrgen.cli import app

from .conftest import assert_user_error

# name -> (arguments after the CT, substrings the message must contain); "{ct}" is the CT path
CASES = {
    "missing file": (["{missing}"], ["{missing}", "no such file"]),
    "png named nii.gz": (["{png}"], ["{png}", "PNG image"]),
    "primary not a number": (["{ct}", "--primary", "0,abc"], ["--primary 0,abc", "'abc'"]),
    "sdd below sid": (["{ct}", "--sid", "1000", "--sdd", "500"], ["--sdd 500", "--sid 1000"]),
    "sdd equal to sid": (["{ct}", "--sid", "800", "--sdd", "800"], ["--sdd 800", "--sid 800"]),
    "size 0": (["{ct}", "--size", "0"], ["--size 0", "pixel"]),
    "size negative": (["{ct}", "--size", "-3"], ["--size -3"]),
    "size not an integer": (["{ct}", "--size", "abc"], ["--size", "render --help"]),
    "mu_water 0": (["{ct}", "--mu-water", "0"], ["--mu-water 0"]),
    "out is a folder": (["{ct}", "--out", "{folder}"], ["{folder}", "--out", "folder"]),
    "out not a figure format": (["{ct}", "--out", "{xyz}"], ["{xyz}", "'.xyz'", ".png", ".pdf"]),
    "no CT given": ([], ["ct", "render --help"]),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_exit_2(name, ct_file, png_as_nifti, tmp_path):
    paths = dict(ct=ct_file, png=png_as_nifti, missing=tmp_path / "absent.nii.gz", folder=tmp_path)
    paths["xyz"] = tmp_path / "x.xyz"
    args, names = CASES[name]
    args = [a.format(**paths) for a in args]
    out = ["--out", str(tmp_path / "drr.png")] if "--out" not in args else []
    result = CliRunner().invoke(app, ["render", *args, *out])
    assert_user_error(result, *(n.format(**paths) for n in names))
    assert not (tmp_path / "drr.png").exists()


def test_good_input_still_renders(ct_file, tmp_path):
    out = tmp_path / "drr.png"
    args = ["render", str(ct_file), "--out", str(out), "--size", "32", "--primary", "0, 90"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0 and f"wrote {out}" in result.stdout
