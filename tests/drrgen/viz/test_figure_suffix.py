"""An output figure with a suffix matplotlib cannot write is a user error naming the path."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from drrgen.cli import app
from drrgen.errors import UserError
from drrgen.viz import figure


def test_save_refuses_an_unsupported_suffix_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig, _ = figure.subplots()
    with pytest.raises(UserError, match=r"x\.xyz: unsupported figure format '\.xyz'.*\.png"):
        figure.save(fig, tmp_path / "x.xyz", dpi=50)
    assert not plt.fignum_exists(fig.number)
    assert not (tmp_path / "x.xyz").exists()


@pytest.mark.parametrize("name", ["a.png", "a.PDF", "a.svg", "a.jpg"])
def test_save_writes_supported_suffixes(tmp_path, name):
    fig, _ = figure.subplots()
    assert figure.save(fig, tmp_path / name, dpi=20).stat().st_size > 0


def test_show_refuses_an_unsupported_suffix_before_opening_the_store(tmp_path):
    out = tmp_path / "x.xyz"
    result = CliRunner().invoke(app, ["show", str(tmp_path / "s.zarr"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: unsupported figure"), lines
    assert ".png" in lines[0] and "Traceback" not in result.output
