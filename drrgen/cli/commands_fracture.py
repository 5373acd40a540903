"""``drrgen fracture``: the synthetic two-view fracture dataset (intact vs fractured CTs)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from drrgen.cli.app import app
from drrgen.clikit import out_folder


@app.command()
def fracture(
    out: Path = typer.Option(Path("data/fracture"), "--out", help="Dataset folder to write."),
    config: Path | None = typer.Option(
        None, help="YAML dataset config (e.g. pipelines/fracture_synthetic.yaml); KEY=VALUE win."
    ),
    overrides: list[str] | None = typer.Argument(
        None,
        metavar="KEY=VALUE",
        help="Dataset settings, e.g. phantoms=40 phantom_kinds=[forearm,leg] views.size=64 "
        "studies_per_volume=8 ct_dir=data/ct (the keys of FractureDatasetConfig).",
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering volumes."),
) -> None:
    """Render two-view studies of intact (label 0) and fractured (label 1) CTs as PNGs plus
    studies.csv (the generic study format of `xmatch finetune`); split by volume. Safe to
    rerun: a complete dataset with the same parameters is kept."""
    from drrgen.fracture.dataset import load_fracture_config
    from drrgen.fracture.dataset import write_fracture_dataset as write

    cfg = load_fracture_config(config, overrides)
    start = time.perf_counter()
    path = write(out_folder(out), cfg, workers=workers)
    typer.echo(f"fracture dataset: {path} ({time.perf_counter() - start:.1f} s)")
    preview = path / "preview.png"
    try:
        if not preview.exists():
            from drrgen.viz import draw_studies

            draw_studies(path, preview)
        typer.echo(f"preview:          {preview} (test studies, fracture points ringed)")
    except (OSError, ValueError) as err:  # an empty test split, an unwritable folder: the
        # dataset itself is complete and kept, so report and exit 0
        typer.echo(f"no preview: {type(err).__name__}: {err}")
