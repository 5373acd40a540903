"""Cone-beam geometry: the `View` type and C-arm constructors."""

from drrgen.geometry.carm import carm_view, rotation_matrix
from drrgen.geometry.view import View

__all__ = ["View", "carm_view", "rotation_matrix"]
