"""The annotation format: a round trip, and one-line errors naming the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from drrgen.errors import UserError
from xmatch_train.corr_finetune import AnnotatedPair, read_annotations, write_annotations


@pytest.fixture
def images(tmp_path):
    """Two grey PNGs: a.png 40 x 30 (W x H) and b.png 20 x 20."""
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (30, 40)), ("b.png", (20, 20))):
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def _doc(**pair):
    entry = dict(image0="a.png", image1="b.png", positives=[[1, 2, 3, 4]], negatives=[])
    return dict(format="xmatch.annotations", version=1, pairs=[{**entry, **pair}])


def _write(folder, doc) -> str:
    path = folder / "ann.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_round_trip_resolves_images_against_the_file(images):
    pair = AnnotatedPair("p", str(images / "a.png"), str(images / "b.png"),
                         ((39.0, 29.0, 0.0, 19.0),), ((1.5, 2.5, 3.0, 4.0),), "test")  # fmt: skip
    path = write_annotations(images / "ann.json", [pair])
    assert json.loads(path.read_text())["pairs"][0]["image0"] == "a.png"
    assert read_annotations(path) == [pair]


@pytest.mark.parametrize(
    "pair, problem",
    [
        (dict(image1="missing.png"), "image1 .*missing.png: file not found"),
        (dict(positives=[[40, 2, 3, 4]]), r"positives\[0\] point \(40, 2\) lies outside image0"),
        (dict(negatives=[[1, 2, 3, -1]]), r"negatives\[0\] point \(3, -1\) lies outside image1"),
        (dict(positives=[[1, 2, 3]]), r"positives\[0\] = \[1, 2, 3\]; expected four numbers"),
        (dict(negatives="none"), "'negatives' must be a list"),
        (dict(split="holdout"), "split 'holdout'; expected one of train, val, test"),
        (dict(points=[]), r"pairs\[0\]: unknown key\(s\) points"),
        (dict(image0=3), "'image0' must be an image path"),
    ],
)
def test_mistakes_are_one_line_naming_file_and_problem(images, pair, problem):
    path = _write(images, _doc(**pair))
    with pytest.raises(UserError, match=problem) as err:
        read_annotations(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "invalid JSON"),
        ('{"format": "other", "version": 1, "pairs": []}', "not an annotation file"),
        ('{"format": "xmatch.annotations", "version": 1, "pairs": []}', "non-empty list"),
    ],
)
def test_malformed_files(tmp_path, text, problem):
    path = tmp_path / "ann.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=problem):
        read_annotations(path)


def test_missing_file_and_duplicate_ids(images):
    with pytest.raises(UserError, match="nope.json: annotation file not found"):
        read_annotations(images / "nope.json")
    doc = _doc(id="x")
    doc["pairs"] *= 2
    with pytest.raises(UserError, match="duplicate pair id"):
        read_annotations(_write(images, doc))
