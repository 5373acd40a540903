"""Cone-beam Joseph projector."""

from drrgen.projector.project import project

__all__ = ["project"]
