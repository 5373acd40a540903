"""Procedural limb phantoms (forearm, hand, elbow, knee, leg, foot) as HU volumes (LPS, mm).

Names are imported on first use (PEP 562): `drrgen.phantoms.kinds` loads nothing else.
"""

from drrgen._lazy import lazy_names

_API = {
    "KINDS": "drrgen.phantoms.kinds",
    "kind_of": "drrgen.phantoms.phantom",
    "make_phantom": "drrgen.phantoms.phantom",
    "phantom_layout": "drrgen.phantoms.phantom",
}

__all__ = sorted(_API)

__getattr__, __dir__ = lazy_names("drrgen.phantoms", _API, globals())
