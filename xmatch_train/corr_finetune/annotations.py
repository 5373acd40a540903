"""The annotation format of real pairs (the paper's Table 2 protocol): per pair two images, a few
positive and many negative point correspondences, an optional split.

One JSON file (``format: xmatch.annotations``, ``version: 1``)::

    {"format": "xmatch.annotations", "version": 1,
     "pairs": [
       {"id": "wrist_017",                      # unique; defaults to the pair's index
        "image0": "images/wrist_017_ap.png",    # relative to the JSON file's folder
        "image1": "images/wrist_017_lat.dcm",
        "positives": [[x0, y0, x1, y1], ...],   # a point of image0 and its match in image1
        "negatives": [[x0, y0, x1, y1], ...],   # point pairs that do not correspond
        "split": "train"}                        # optional: train, val or test
     ]}

Points are **pixel coordinates of the original images** (as stored in the file, before any
crop or resize), ``x`` the column and ``y`` the row, pixel centres at integers ((0, 0) is the
centre of the top-left pixel; any real value in ``[-0.5, W - 0.5) x [-0.5, H - 0.5)`` lies
inside the image). `SCHEMA` is the JSON schema of the file.

`read_annotations` refuses a file with one line ``<file>: <problem>`` (a `UserError`): not
JSON, a malformed entry (naming the pair and the key), a missing image, a point outside its
image, a duplicate id, an unknown split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from drrgen.errors import UserError

FORMAT = "xmatch.annotations"
VERSION = 1
SPLITS = ("train", "val", "test")

Point = tuple[float, float]  # (x, y) = (column, row), original pixels
PointPair = tuple[float, float, float, float]  # (x0, y0) in image0, (x1, y1) in image1

_POINT_LIST = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "xmatch annotated pairs",
    "type": "object",
    "required": ["format", "version", "pairs"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "pairs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["image0", "image1", "positives", "negatives"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "image0": {"type": "string"},
                    "image1": {"type": "string"},
                    "positives": _POINT_LIST,
                    "negatives": _POINT_LIST,
                    "split": {"enum": [*SPLITS, None]},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class AnnotatedPair:
    """Two views with point correspondences.

    Attributes:
        id: unique name of the pair.
        image0, image1: image paths (absolute, or relative to the working directory once
            read: `read_annotations` resolves them against the JSON file's folder).
        positives: (x0, y0, x1, y1) point pairs that correspond (pixels (column, row)).
        negatives: (x0, y0, x1, y1) point pairs that do not.
        split: ``train``, ``val``, ``test`` or None (the run splits by pair).
    """

    id: str
    image0: str
    image1: str
    positives: tuple[PointPair, ...]
    negatives: tuple[PointPair, ...]
    split: str | None = None

    def to_json(self, root: Path | None = None) -> dict:
        """The pair's JSON entry; image paths relative to `root` when they lie under it."""

        def rel(p: str) -> str:
            if root is None:
                return p
            try:
                return Path(p).resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                return p

        entry = dict(id=self.id, image0=rel(self.image0), image1=rel(self.image1))
        entry["positives"] = [list(p) for p in self.positives]
        entry["negatives"] = [list(p) for p in self.negatives]
        if self.split is not None:
            entry["split"] = self.split
        return entry


def write_annotations(path: str | Path, pairs: list[AnnotatedPair]) -> Path:
    """Write `pairs` as an annotation file (image paths relative to its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(format=FORMAT, version=VERSION, pairs=[p.to_json(path.parent) for p in pairs])
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def read_annotations(path: str | Path, check_images: bool = True) -> list[AnnotatedPair]:
    """Read and check an annotation file.

    Args:
        path: the JSON file.
        check_images: also open every image's header and check that every point lies inside
            its image.

    Raises:
        UserError: one line ``<file>: <problem>`` (pair and key named).
    """
    path = Path(path)
    doc = _load_json(path)
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise UserError(
            f"{path}: not an annotation file (expected format {FORMAT!r}, version {VERSION}; "
            f"found {doc.get('format')!r}, {doc.get('version')!r})"
        )
    entries = doc.get("pairs")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: 'pairs' must be a non-empty list")
    pairs = [_pair(path, n, e) for n, e in enumerate(entries)]
    ids = [p.id for p in pairs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserError(f"{path}: duplicate pair id(s) {', '.join(dup[:5])}")
    if check_images:
        for pair in pairs:
            _check_images(path, pair)
    return pairs


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: annotation file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a JSON text file (not UTF-8)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    return doc


def _pair(path: Path, n: int, entry) -> AnnotatedPair:
    """Entry `n` of the file as an `AnnotatedPair` (image paths resolved, not opened)."""
    where = f"{path}: pairs[{n}]"
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(SCHEMA["properties"]["pairs"]["items"]["properties"]))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    pid = entry.get("id", str(n))
    if not isinstance(pid, str) or not pid:
        raise UserError(f"{where}: 'id' must be a non-empty string")
    where = f"{path}: pair {pid!r}"
    images = []
    for key in ("image0", "image1"):
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            raise UserError(f"{where}: '{key}' must be an image path")
        images.append(str(path.parent / value))
    split = entry.get("split")
    if split is not None and split not in SPLITS:
        raise UserError(f"{where}: split {split!r}; expected one of {', '.join(SPLITS)}")
    points = [_points(where, key, entry.get(key)) for key in ("positives", "negatives")]
    return AnnotatedPair(pid, images[0], images[1], points[0], points[1], split)


def _points(where: str, key: str, value) -> tuple[PointPair, ...]:
    if not isinstance(value, list):
        raise UserError(f"{where}: '{key}' must be a list of [x0, y0, x1, y1]")
    out = []
    for k, p in enumerate(value):
        ok = isinstance(p, list) and len(p) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        if not ok or not all(math.isfinite(v) for v in p):
            raise UserError(f"{where}: {key}[{k}] = {p!r}; expected four numbers [x0, y0, x1, y1]")
        out.append(tuple(float(v) for v in p))
    return tuple(out)


def image_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file (PNG/JPEG/TIFF header, or the DICOM read in full).

    Raises:
        UserError: missing or unreadable image (named).
    """
    from PIL import Image

    from xmatch_train.match.images import is_dicom, read_image

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    if not is_dicom(path):
        try:
            with Image.open(path) as img:
                return img.size[1], img.size[0]
        except Exception:  # the full reader names the problem
            pass
    return read_image(path).shape


def _check_images(path: Path, pair: AnnotatedPair) -> None:
    """Every image exists and every point lies inside its image."""
    for side, image in enumerate((pair.image0, pair.image1)):
        if not Path(image).is_file():
            raise UserError(f"{path}: pair {pair.id!r}: image{side} {image}: file not found")
        h, w = image_shape(image)
        for key in ("positives", "negatives"):
            for k, p in enumerate(getattr(pair, key)):
                x, y = p[2 * side], p[2 * side + 1]
                if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
                    raise UserError(
                        f"{path}: pair {pair.id!r}: {key}[{k}] point ({x:g}, {y:g}) lies outside "
                        f"image{side} ({w} x {h} pixels, x in [-0.5, {w - 0.5:g}), "
                        f"y in [-0.5, {h - 0.5:g}))"
                    )
