"""Figures for users to inspect generated data."""

from drrgen.viz.show import pick_patch, show_sample

__all__ = ["pick_patch", "show_sample"]
