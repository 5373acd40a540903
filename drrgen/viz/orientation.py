"""DRR figures labelled with patient directions, so orientation is seen, not guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drrgen.geometry.view import View
from drrgen.viz import figure
from drrgen.viz.show import _display, display_scale

# LPS axes -> (label of the + direction, label of the - direction).
_AXIS_LABELS = (("L", "R"), ("P", "A"), ("S", "I"))


def direction_label(vec: np.ndarray) -> str:
    """Patient direction(s) a vector points to, dominant first, e.g. 'L' or 'SP'.

    Args:
        vec: (3,) direction in LPS.
    """
    vec = np.asarray(vec, dtype=np.float64)
    vec = vec / np.linalg.norm(vec)
    order = np.argsort(-np.abs(vec))
    parts = [_AXIS_LABELS[a][0 if vec[a] > 0 else 1] for a in order if abs(vec[a]) > 0.38]
    return "".join(parts)


def draw_labelled_drr(ax, drr: np.ndarray, view: View, title: str = "", scale=None) -> None:
    """Show a DRR [row, col] with the patient direction at each image edge.

    Args:
        ax: matplotlib axes.
        drr: (H, W) line integrals.
        view: its geometry; +u points to the right edge, +v to the bottom edge.
        title: axes title.
        scale: display scale s of ``1 - exp(-x / s)`` (default: from the image).
    """
    s = display_scale(drr) if scale is None else scale
    ax.imshow(_display(drr, s), cmap="gray", vmin=0, vmax=1)
    style = dict(color="yellow", fontsize=12, fontweight="bold", ha="center", va="center")
    right, down = direction_label(view.u), direction_label(view.v)
    left, up = direction_label(-view.u), direction_label(-view.v)
    ax.text(0.96, 0.5, right, transform=ax.transAxes, **style)
    ax.text(0.04, 0.5, left, transform=ax.transAxes, **style)
    # Axes coordinates run upwards; image row 0 (the -v side) is drawn at the top.
    ax.text(0.5, 0.96, up, transform=ax.transAxes, **{**style, "va": "top"})
    ax.text(0.5, 0.04, down, transform=ax.transAxes, **{**style, "va": "bottom"})
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save_views_figure(drrs, views, titles, out, dpi: int = 110) -> Path:
    """Save DRRs side by side with direction labels as a PNG; returns the path."""
    n = len(drrs)
    fig, axes = figure.subplots(1, n, figsize=(3.6 * n, 3.9), squeeze=False)
    scale = display_scale(np.stack(drrs))
    for ax, drr, view, title in zip(axes[0], drrs, views, titles, strict=True):
        draw_labelled_drr(ax, drr, view, title, scale)
    fig.tight_layout()
    return figure.save(fig, out, dpi)
