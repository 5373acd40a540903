"""Core commands: inspect a CT and render one DRR."""

from __future__ import annotations

from pathlib import Path

import typer

from drrgen.cli.app import app
from drrgen.errors import UserError


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as _v

    typer.echo(_v("xmatch"))


@app.command()
def render(
    ct: Path = typer.Argument(..., help="CT file or DICOM series folder."),
    out: Path = typer.Option(Path("drr.png"), help="PNG to write."),
    primary: str = typer.Option("0,90", help="Primary angles (deg), comma-separated."),
    secondary: float = typer.Option(0.0, help="Cranio-caudal tilt (deg) of every view."),
    sid: float = typer.Option(1000.0, help="Source to isocenter distance, mm."),
    sdd: float = typer.Option(1500.0, help="Source to detector distance, mm."),
    size: int = typer.Option(256, help="Detector size in pixels (square)."),
    mu_water: float = typer.Option(0.02, help="mu of water, 1/mm."),
    npy: bool = typer.Option(False, help="Also save the line integrals as OUT.npy (V, H, W)."),
) -> None:
    """Render DRRs of a CT around its centre, labelled with patient directions (L/R, A/P, S/I).

    The pixel pitch is chosen so the whole CT fits the detector. 0 deg = AP, 90 = source at
    the patient's left, 180 = PA (see `drrgen.geometry.carm`).
    """
    angles = _render_options(primary, sid, sdd, size, mu_water, out)

    import numpy as np

    from drrgen.geometry import carm_view
    from drrgen.projector import project
    from drrgen.viz import save_views_figure
    from drrgen.volume import read_ct

    vol = read_ct(ct)
    mu = vol.to_mu(mu_water)
    extent = np.linalg.norm(vol.spacing * np.array(vol.shape_ijk))  # mm, the grid diagonal
    pixel = extent * sdd / sid / size
    views = [
        carm_view(
            a,
            secondary,
            source_to_isocenter_mm=sid,
            source_to_detector_mm=sdd,
            pixel_mm=pixel,
            shape=(size, size),
            isocenter=vol.center,
        )
        for a in angles
    ]
    drrs = [project(mu, v) for v in views]
    titles = [f"{Path(str(ct)).name}: primary {a:g}, secondary {secondary:g} deg" for a in angles]
    save_views_figure(drrs, views, titles, out)
    if npy:
        np.save(out.with_suffix(".npy"), np.stack(drrs))
    typer.echo(f"wrote {out}")


def _render_options(
    primary: str, sid: float, sdd: float, size: int, mu_water: float, out: Path
) -> list[float]:
    """Check `render`'s options before the CT is read; returns the primary angles.

    Raises:
        UserError: naming the option and its value.
    """
    angles = []
    for word in primary.split(","):
        try:
            angles.append(float(word))
        except ValueError:
            raise UserError(
                f"--primary {primary}: {word.strip()!r} is not a number "
                "(comma-separated angles in degrees, e.g. 0,90)"
            ) from None
    if not 0 < sid < sdd:
        raise UserError(
            f"--sdd {sdd:g}: the source-detector distance must exceed the source-isocenter "
            f"distance --sid {sid:g} (mm), and both must be positive"
        )
    if size < 1:
        raise UserError(f"--size {size}: the detector needs at least 1 pixel")
    if mu_water <= 0:
        raise UserError(f"--mu-water {mu_water:g}: must be > 0 (1/mm)")
    if out.is_dir():
        raise UserError(f"{out}: --out must be a PNG file, but this is a folder")
    from drrgen.viz.figure import check_path

    check_path(out)
    return angles
