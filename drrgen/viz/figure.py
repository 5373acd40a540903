"""Figure creation and saving shared by the viz modules (PNG files, no display)."""

from __future__ import annotations

from pathlib import Path


def subplots(*args, **kwargs):
    """`matplotlib.pyplot.subplots` on the file-only Agg backend.

    The backend is chosen here, when a figure is made, not when drrgen is imported: importing
    the package must not change a user's matplotlib settings.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, out: str | Path, dpi: int) -> Path:
    """Write `fig` to `out` (parent folders created), close it and return the path."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
