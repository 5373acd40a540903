"""Pictures of a matched pair, drawn on the original images (original pixel coordinates)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import ConnectionPatch, Rectangle  # noqa: E402

from xmatch_train.match.preprocess import Prepared  # noqa: E402

COLOURS = ("#ffd400", "#00e5ff", "#ff4fd8", "#7CFC00", "#ff8c00", "#9d7bff")
MAX_DISPLAY = 1024  # pixels per side drawn; larger images are subsampled for the figure


def strongest_queries(
    corr: np.ndarray, valid_a: np.ndarray, grid: tuple[int, int], count: int = 4
) -> list[int]:
    """Patches of A with the strongest best match, at least max(2, grid / 5) patches apart on
    the grid (Chebyshev distance), so the figure shows different places."""
    best = np.where(valid_a, corr.max(axis=1), -np.inf)  # (N,)
    gap = max(2, grid[0] // 5)
    chosen: list[int] = []
    for i in np.argsort(-best, kind="stable"):
        if not np.isfinite(best[i]) or len(chosen) == count:
            break
        r, c = divmod(int(i), grid[1])
        if all(max(abs(r - q // grid[1]), abs(c - q % grid[1])) >= gap for q in chosen):
            chosen.append(int(i))
    return chosen


def _show(ax, p: Prepared, title: str) -> None:
    """The whole original image under the model's window, in original pixel coordinates."""
    img = p.display()
    h, w = img.shape
    step = max(1, int(np.ceil(max(h, w) / MAX_DISPLAY)))
    ax.imshow(img[::step, ::step], cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax, box, colour: str, lw: float = 1.5, label: str | None = None) -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=lw))
    if label:
        ax.text(x0, y0, label, color=colour, fontsize=8, va="bottom", ha="left")


def _heat(ax, p: Prepared, row: np.ndarray, grid: tuple[int, int]) -> None:
    """`row` (N,) as a heat map over B's patches; patches outside the image left clear."""
    heat = np.where(p.frame.inside(grid), row, np.nan).reshape(grid)
    ax.imshow(
        np.ma.masked_invalid(heat),
        cmap="magma",
        vmin=0,
        vmax=1,
        alpha=0.5,
        extent=p.frame.extent(),
        interpolation="nearest",
    )


def _centre(box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def plot_matches(
    a: Prepared, b: Prepared, corr: np.ndarray, grid: tuple[int, int], path: Path, title=""
) -> list[int]:
    """Top: A with a few query patches, B with each one's best match (same colour, joined).
    Bottom: each query's predicted row of C as a heat map on B (0 to 1).

    Returns:
        The query patches of A shown.
    """
    queries = strongest_queries(corr, a.frame.inside(grid), grid)
    valid_b = b.frame.inside(grid)
    n = max(1, len(queries))
    fig = plt.figure(figsize=(3.2 * max(n, 2), 6.8))
    gs = fig.add_gridspec(2, 2 * n)
    ax_a, ax_b = fig.add_subplot(gs[0, :n]), fig.add_subplot(gs[0, n:])
    _show(ax_a, a, f"A: {Path(a.radiograph.path).name}")
    _show(ax_b, b, f"B: {Path(b.radiograph.path).name} (best match of each query)")
    for k, q in enumerate(queries):
        colour = COLOURS[k % len(COLOURS)]
        box_a = a.frame.patch_box(q, grid)
        j = int(np.argmax(np.where(valid_b, corr[q], -np.inf)))
        box_b = b.frame.patch_box(j, grid)
        _box(ax_a, box_a, colour, label=str(k + 1))
        _box(ax_b, box_b, colour, label=f"{k + 1}: {corr[q, j]:.2f}")
        fig.add_artist(
            ConnectionPatch(
                xyA=_centre(box_a),
                xyB=_centre(box_b),
                coordsA="data",
                coordsB="data",
                axesA=ax_a,
                axesB=ax_b,
                color=colour,
                lw=0.8,
            )
        )
        ax = fig.add_subplot(gs[1, 2 * k : 2 * k + 2])
        _show(ax, b, f"query {k + 1}: C[{q}, :] on B (max {corr[q].max():.2f})")
        ax.title.set_color(colour if colour != "#ffd400" else "#b8860b")
        _heat(ax, b, corr[q], grid)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return queries


def plot_query(
    a: Prepared, b: Prepared, query: dict, corr: np.ndarray, grid, path: Path, title=""
) -> None:
    """A with the query point and its patch; B with that patch's predicted row of C as a heat
    map and its top matches boxed."""
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 5.2))
    x, y = query["point"]
    _show(ax_a, a, f"A: query ({x:g}, {y:g}), patch {query['patch']}")
    ax_a.plot([x + 0.5], [y + 0.5], "+", color="#00e5ff", ms=14, mew=2)
    _box(ax_a, query["box_a"], "#ffd400")
    row = corr[query["patch"]]
    _show(ax_b, b, f"B: C[{query['patch']}, :] (max {row.max():.2f}), top matches boxed")
    _heat(ax_b, b, row, grid)
    for rank, m in enumerate(query["matches"], start=1):
        _box(ax_b, m["box_b"], "#00e5ff" if rank == 1 else "#ffffff", lw=1.5 if rank == 1 else 0.8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
