"""Figure creation and saving shared by the viz modules (PNG files, no display)."""

from __future__ import annotations

from pathlib import Path

from drrgen.errors import UserError

# File types matplotlib's Agg canvas writes whatever the installed Pillow (checked by suffix).
SUFFIXES = (
    ".png",
    ".pdf",
    ".svg",
    ".svgz",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".webp",
    ".eps",
    ".ps",
)


def subplots(*args, **kwargs):
    """`matplotlib.pyplot.subplots` on the file-only Agg backend.

    The backend is chosen here, when a figure is made, not when drrgen is imported: importing
    the package must not change a user's matplotlib settings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def check_path(out: str | Path) -> Path:
    """`out` as a Path when its suffix is a figure format we can write (`SUFFIXES`).

    Raises:
        UserError: ``<out>: unsupported figure format ...`` listing the supported suffixes.
    """
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        what = f"format {out.suffix!r}" if out.suffix else "format (no suffix)"
        raise UserError(f"{out}: unsupported figure {what}; use one of {', '.join(SUFFIXES)}")
    return out


def save(fig, out: str | Path, dpi: int) -> Path:
    """Write `fig` to `out` (parent folders created), close it and return the path.

    Raises:
        UserError: `out`'s suffix is not a supported figure format (`check_path`); `fig` is
            closed.
    """
    import matplotlib.pyplot as plt

    try:
        out = check_path(out)
    except UserError:
        plt.close(fig)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
