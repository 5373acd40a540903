"""Procedural limb phantoms (forearm, hand) as HU volumes."""

from drrgen.phantoms.phantom import KINDS, make_phantom

__all__ = ["KINDS", "make_phantom"]
