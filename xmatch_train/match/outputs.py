"""What `xmatch match` writes about a pair: top-k matches per patch of A, with boxes in the
original pixels of both images (``matches.json``), and the query point's matches.

Boxes are ``[x0, y0, x1, y1]``: x = column, y = row, pixel (r, c) covers [c, c + 1) x
[r, r + 1); a patch's box is clipped to the part of the image the model sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xmatch_train.match.preprocess import Prepared

BOX_FORMAT = (
    "[x0, y0, x1, y1] in the original image's pixels: x = column, y = row, pixel (r, c) "
    "covers [c, c+1) x [r, r+1); clipped to the part of the image the model sees"
)


def top_matches(
    row: np.ndarray, valid: np.ndarray, b: Prepared, grid: tuple[int, int], k: int
) -> list[dict]:
    """The `k` best patches of B for one patch of A.

    Args:
        row: (N,) predicted C of that patch of A against every patch of B.
        valid: (N,) bool, patches of B that show part of B.
        b: B prepared (for the boxes).
        grid: token grid.
        k: how many.
    """
    scores = np.where(valid, row, -np.inf)
    order = np.argsort(-scores, kind="stable")[: min(k, int(valid.sum()))]
    return [
        dict(
            patch=int(j),
            row=int(j) // grid[1],
            col=int(j) % grid[1],
            score=round(float(row[j]), 5),
            box_b=b.frame.patch_box(int(j), grid),
        )
        for j in order
    ]


def patch_entries(
    corr: np.ndarray, a: Prepared, b: Prepared, grid: tuple[int, int], k: int
) -> list[dict]:
    """One entry per patch of A that shows part of A: its box and its top-k matches on B."""
    valid_b = b.frame.inside(grid)
    entries = []
    for i in np.flatnonzero(a.frame.inside(grid)):
        entries.append(
            dict(
                patch=int(i),
                row=int(i) // grid[1],
                col=int(i) % grid[1],
                box_a=a.frame.patch_box(int(i), grid),
                matches=top_matches(corr[i], valid_b, b, grid, k),
            )
        )
    return entries


def query_entry(
    point: tuple[float, float], corr: np.ndarray, a: Prepared, b: Prepared, grid, k: int
) -> dict:
    """The patch of A under pixel `point` (x, y) and its top-k matches on B.

    Raises:
        ValueError: the point is outside the part of A the model sees.
    """
    x, y = point
    patch = a.frame.patch_at(x, y, grid)
    if patch is None:
        h, w = a.frame.shape
        vy0, vy1, vx0, vx1 = a.frame.visible
        raise ValueError(
            f"--query {x:g},{y:g}: outside {a.radiograph.path} as the model sees it (columns "
            f"{vx0}..{vx1 - 1}, rows {vy0}..{vy1 - 1} of {w} x {h})"
        )
    return dict(
        point=[x, y],
        patch=patch,
        row=patch // grid[1],
        col=patch % grid[1],
        box_a=a.frame.patch_box(patch, grid),
        matches=top_matches(corr[patch], b.frame.inside(grid), b, grid, k),
    )


def image_record(p: Prepared) -> dict:
    """What the JSON says about one image: as read, and what the model saw of it."""
    vy0, vy1, vx0, vx1 = p.frame.visible
    return dict(
        p.radiograph.info(),
        visible_box=[vx0, vy0, vx1, vy1],
        window=[round(p.window[0], 6), round(p.window[1], 6)],
        original_pixels_per_model_pixel=round(p.frame.scale, 6),
    )


def write_matches(path: Path, header: dict, a: Prepared, b: Prepared, patches, query) -> Path:
    """``matches.json``: `header` (run, model, grid, ...), both images, the patches' top-k and
    the query's (None: no query)."""
    record = dict(header, box_format=BOX_FORMAT, a=image_record(a), b=image_record(b))
    record["patches"] = patches
    if query is not None:
        record["query"] = query
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path
