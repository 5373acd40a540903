"""Figures for users to inspect generated data."""

from drrgen.viz.orientation import direction_label, draw_labelled_drr, save_views_figure
from drrgen.viz.phantoms import draw_phantom_gallery, draw_phantoms, phantom_views
from drrgen.viz.show import pick_patch, show_sample
from drrgen.viz.studies import draw_studies, fracture_pixel

__all__ = [
    "direction_label",
    "draw_studies",
    "draw_labelled_drr",
    "draw_phantom_gallery",
    "draw_phantoms",
    "fracture_pixel",
    "phantom_views",
    "pick_patch",
    "save_views_figure",
    "show_sample",
]
