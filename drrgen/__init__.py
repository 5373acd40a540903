"""drrgen: DRRs and many-to-many correspondence ground truth from CT volumes.

The public API::

    vol = drrgen.read_ct("ct.nii.gz")                  # HU, LPS mm affine
    view = drrgen.carm_view(30, 10, shape=(256, 256))  # cone-beam View
    drr = drrgen.project(vol.to_mu(), view)             # (H, W) line integrals
    corr = drrgen.correspondence(vol, [view0, view1])  # (P, N, N) in [0, 1]
"""

from drrgen.correspondence import correspondence
from drrgen.errors import CTReadError, DrrgenError
from drrgen.geometry import View, carm_view
from drrgen.projector import project
from drrgen.volume import Volume, read_ct, write_ct

__all__ = [
    "CTReadError",
    "DrrgenError",
    "View",
    "Volume",
    "carm_view",
    "correspondence",
    "project",
    "read_ct",
    "write_ct",
]
