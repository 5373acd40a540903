"""Is the best match where the truth is? The top-1 score `xmatch match` is measured with."""

from __future__ import annotations

import numpy as np


def top1_within(
    pred: np.ndarray,
    target: np.ndarray,
    grid: tuple[int, int],
    threshold: float = 0.2,
    radius: int = 1,
) -> tuple[int, int]:
    """Count the query patches of A whose top-1 predicted patch of B lies within `radius`
    patches (Chebyshev distance on the grid) of a true correspondence.

    Args:
        pred: (N, N) predicted C (or a baseline's matrix).
        target: (N, N) true C.
        grid: (rows, cols), N = rows * cols, patches row-major.
        threshold: a true correspondence is C > threshold; the queries are the patches of A
            with at least one.
        radius: allowed distance in patches.

    Returns:
        (hits, queries).
    """
    positive = target > threshold  # (N, N)
    queries = np.flatnonzero(positive.any(axis=1))
    if queries.size == 0:
        return 0, 0
    best = np.argmax(pred[queries], axis=1)  # (Q,)
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])  # (N,) each
    dist = np.maximum(  # (Q, N): from each query's best patch to every patch of B
        np.abs(rows[best][:, None] - rows[None, :]), np.abs(cols[best][:, None] - cols[None, :])
    )
    hits = ((dist <= radius) & positive[queries]).any(axis=1)
    return int(hits.sum()), int(queries.size)
