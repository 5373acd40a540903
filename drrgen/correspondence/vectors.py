"""3-vector helpers for per-view geometry.

`np.cross` and `np.linalg.norm` cost 5-20 us per call on (3,) arrays, which is a sizeable
part of a sub-millisecond correspondence call; these do the same arithmetic directly.
"""

from __future__ import annotations

import math

import numpy as np

from drrgen.geometry.view import View


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3,) cross product of two (3,) vectors."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def norm3(a: np.ndarray) -> float:
    """Euclidean length of a (3,) vector."""
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def unit_normal(view: View) -> np.ndarray:
    """(3,) unit detector normal pointing away from the source (as `View.normal`)."""
    n = cross3(view.u, view.v)
    n /= norm3(n)
    return n if np.dot(view.detector_center - view.source, n) > 0 else -n
