"""Annotated points -> the model's patch pairs, through the same map `xmatch match` uses
(`xmatch_train.match.preprocess.Frame`: original pixels <-> model input).

A point (x, y) (pixel centres at integers, `annotations`) lies in pixel
``(floor(x + 0.5), floor(y + 0.5))``; that pixel's patch is ``Frame.patch_at``. A point pair
becomes the entry (patch of image0, patch of image1) of the (N, N) matrix, labelled 1
(positive) or 0 (negative). Points the model does not see (outside a cropped border or a
``crop`` fit) are dropped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xmatch_train.corr_finetune.annotations import AnnotatedPair, PointPair
from xmatch_train.match.preprocess import Frame


@dataclass(frozen=True)
class Entries:
    """The annotated entries of one pair's (N, N) matrix.

    Attributes:
        a: (E,) int64 patch of image0 (row-major on the grid).
        b: (E,) int64 patch of image1.
        label: (E,) float32, 1 positive, 0 negative.
        dropped: annotated point pairs not seen by the model.
    """

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    dropped: int = 0

    def __len__(self) -> int:
        return int(self.a.size)

    def dense(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(target, mask), (N, N) float32 each: label and 1 at the annotated entries, 0
        elsewhere. A patch pair annotated both ways keeps the positive label."""
        target = np.zeros((n, n), np.float32)
        mask = np.zeros((n, n), np.float32)
        order = np.argsort(self.label, kind="stable")  # positives written last win
        target[self.a[order], self.b[order]] = self.label[order]
        mask[self.a, self.b] = 1.0
        return target, mask


def point_patch(frame: Frame, x: float, y: float, grid: tuple[int, int]) -> int | None:
    """The model patch showing original point (x, y) (column, row; pixel centres at
    integers), None where the model does not see it."""
    return frame.patch_at(math.floor(x + 0.5), math.floor(y + 0.5), grid)


def pair_entries(
    pair: AnnotatedPair, frame0: Frame, frame1: Frame, grid: tuple[int, int]
) -> Entries:
    """The annotated entries of `pair`, its images prepared with `frame0`, `frame1`."""
    a, b, label, dropped = [], [], [], 0
    for value, points in ((1.0, pair.positives), (0.0, pair.negatives)):
        for p in points:
            pa, pb = _patches(p, frame0, frame1, grid)
            if pa is None or pb is None:
                dropped += 1
                continue
            a.append(pa)
            b.append(pb)
            label.append(value)
    return Entries(
        np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(label, np.float32), dropped
    )


def _patches(p: PointPair, frame0: Frame, frame1: Frame, grid) -> tuple[int | None, int | None]:
    x0, y0, x1, y1 = p
    return point_patch(frame0, x0, y0, grid), point_patch(frame1, x1, y1, grid)


def patch_centre(patch: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) pixel (pixel centres at integers) at the centre of `patch` of an image of `size`
    (H, W) tiled exactly by `grid` (a store view: patch (r, c) covers rows [r p, (r+1) p))."""
    r, c = divmod(int(patch), grid[1])
    ph, pw = size[0] / grid[0], size[1] / grid[1]
    return (c + 0.5) * pw - 0.5, (r + 0.5) * ph - 0.5
