"""Cone-beam geometry: the `View` type, C-arm constructors and the drawing of view poses.

Names are imported on first use (PEP 562): `drrgen.geometry.poses` (the `SamplingConfig` that
`drrgen build --help` reads) loads no NumPy.
"""

from drrgen._lazy import lazy_names

_API = {
    "SamplingConfig": "drrgen.geometry.poses",
    "View": "drrgen.geometry.view",
    "carm_view": "drrgen.geometry.carm",
    "draw_pose": "drrgen.geometry.poses",
    "rotation_matrix": "drrgen.geometry.carm",
}

__all__ = sorted(_API)

__getattr__, __dir__ = lazy_names("drrgen.geometry", _API, globals())
