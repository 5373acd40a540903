"""Procedural limb phantoms (forearm, hand, elbow, knee, leg, foot) as HU volumes (LPS, mm)."""

from drrgen.phantoms.phantom import KINDS, kind_of, make_phantom, phantom_layout

__all__ = ["KINDS", "kind_of", "make_phantom", "phantom_layout"]
