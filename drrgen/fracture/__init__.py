"""Synthetic fractures of CT volumes and the two-view fracture dataset made from them."""

from drrgen.fracture.simulate import (
    KINDS,
    Fracture,
    FractureConfig,
    NoBoneError,
    bone_components,
    simulate_fracture,
)

__all__ = [
    "KINDS",
    "Fracture",
    "FractureConfig",
    "NoBoneError",
    "bone_components",
    "simulate_fracture",
]
