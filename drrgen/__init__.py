"""drrgen: DRRs and many-to-many correspondence ground truth from CT volumes.

The public API::

    vol = drrgen.read_ct("ct.nii.gz")                  # HU, LPS mm affine
    view = drrgen.carm_view(30, 10, shape=(256, 256))  # cone-beam View
    drr = drrgen.project(vol.to_mu(), view)             # (H, W) line integrals
    corr = drrgen.correspondence(vol, [view0, view1])  # (P, N, N) in [0, 1]

Names are imported on first use (PEP 562), so ``import drrgen`` and ``drrgen --help`` do not
load Numba and the compiled kernels.
"""

from drrgen._lazy import lazy_names

# public name -> the module that defines it
_API = {
    "CTReadError": "drrgen.errors",
    "DeviceError": "drrgen.errors",
    "DrrgenError": "drrgen.errors",
    "UserError": "drrgen.errors",
    "View": "drrgen.geometry",
    "carm_view": "drrgen.geometry",
    "correspondence": "drrgen.correspondence",
    "project": "drrgen.projector",
    "Volume": "drrgen.volume",
    "read_ct": "drrgen.volume",
    "write_ct": "drrgen.volume",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_names("drrgen", _API, globals())
