"""Core commands: inspect a CT and render one DRR."""

from __future__ import annotations

from pathlib import Path

import typer

from drrgen.cli.app import app


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as _v

    typer.echo(_v("xmatch"))
