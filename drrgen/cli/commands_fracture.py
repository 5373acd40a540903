"""``drrgen fracture``: the synthetic two-view fracture dataset (intact vs fractured CTs)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import typer

from drrgen.cli.app import app
from drrgen.clikit import out_folder


@app.command()
def fracture(
    out: Path = typer.Option(Path("data/fracture"), "--out", help="Dataset folder to write."),
    phantoms: int = typer.Option(160, "--phantoms", min=0, help="Procedural limb phantoms."),
    kinds: str = typer.Option(
        "forearm,leg", "--kinds", help="Phantom kinds used in turn (comma-separated)."
    ),
    phantom_seed: int = typer.Option(1000, "--phantom-seed", min=0, help="First phantom seed."),
    ct_dir: Path = typer.Option(None, "--ct-dir", help="Also use the CTs (HU) in this folder."),
    studies: int = typer.Option(16, "--studies-per-volume", min=1, help="Studies per volume."),
    size: int = typer.Option(128, "--size", min=16, help="Image side, pixels."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split and the studies."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes rendering volumes."),
) -> None:
    """Render two-view studies of intact (label 0) and fractured (label 1) CTs as PNGs plus
    studies.csv (the generic study format of `xmatch finetune`); split by volume. Safe to
    rerun: a complete dataset with the same parameters is kept."""
    from drrgen.fracture.dataset import FractureDatasetConfig, StudyViewConfig
    from drrgen.fracture.dataset import write_fracture_dataset as write

    cfg = FractureDatasetConfig(
        phantoms=phantoms,
        phantom_kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
        phantom_seed=phantom_seed,
        ct_dir=None if ct_dir is None else str(ct_dir),
        studies_per_volume=studies,
        seed=seed,
        views=replace(StudyViewConfig(), size=size),
    )
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
