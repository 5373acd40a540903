"""`xmatch match`: patch correspondences between two real X-ray images (or DRRs exported as
images) from a trained correspondence run.

Reading (`images`, `dicom`) -> the model's input and the map back to pixels (`preprocess`) ->
the model (`matcher`) -> ``matches.json`` (`outputs`) and pictures (`figures`), per pair or
over a CSV of pairs (`pipeline`).
"""

from xmatch_train.match.images import Radiograph, read_image, write_png
from xmatch_train.match.matcher import Matcher, load_matcher
from xmatch_train.match.pipeline import (
    MatchOptions,
    MatchResult,
    match_pair,
    match_pairs,
    read_pairs,
)
from xmatch_train.match.preprocess import Frame, Prepared, collimation_box, prepare
from xmatch_train.match.scoring import top1_within

__all__ = [
    "Frame",
    "MatchOptions",
    "MatchResult",
    "Matcher",
    "Prepared",
    "Radiograph",
    "collimation_box",
    "load_matcher",
    "match_pair",
    "match_pairs",
    "prepare",
    "read_image",
    "read_pairs",
    "top1_within",
    "write_png",
]
