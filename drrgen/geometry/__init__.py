"""Cone-beam geometry: the `View` type, C-arm constructors and the drawing of view poses."""

from drrgen.geometry.carm import carm_view, rotation_matrix
from drrgen.geometry.poses import SamplingConfig, draw_pose
from drrgen.geometry.view import View

__all__ = ["SamplingConfig", "View", "carm_view", "draw_pose", "rotation_matrix"]
