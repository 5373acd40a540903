"""The synthetic fracture dataset: labels match the renders, splits by volume, idempotent."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from drrgen import View, project
from drrgen.fracture.dataset import (
    FractureDatasetConfig,
    StudyViewConfig,
    plan_volumes,
    split_volumes,
    to_uint8,
    write_fracture_dataset,
)
from drrgen.viz import draw_studies, fracture_pixel

TINY = FractureDatasetConfig(
    phantoms=3,
    phantom_seed=1000,
    phantom_shape=(64, 64, 80),
    studies_per_volume=4,
    val_fraction=0.34,
    test_fraction=0.34,
    views=StudyViewConfig(size=32, fov_mm=(40.0, 60.0)),
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_fracture_dataset(tmp_path_factory.mktemp("fx") / "fracture", TINY, progress=False)


def _records(root):
    return [
        json.loads(line)
        for line in (root / "studies.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def test_layout_counts_and_split_by_volume(dataset):
    info = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    assert info["complete"] and info["config"] == TINY.to_dict()
    rows = list(csv.DictReader(open(dataset / "studies.csv")))
    assert len(rows) == 12 and set(rows[0]) == {"study_id", "label", "split", "patient", "images"}
    assert {info["counts"][s]["volumes"] for s in ("train", "val", "test")} == {1}
    by_volume: dict[str, set] = {}
    for r in rows:
        by_volume.setdefault(r["patient"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_volume.values())  # a volume never straddles splits
    for r in rows:
        for path in r["images"].split(";"):
            im = Image.open(dataset / path)
            assert im.mode == "L" and im.size == (32, 32)
    labels = [int(r["label"]) for r in rows]
    assert sum(labels) == 6  # half of every volume's studies are fractured


def test_positives_are_fractured_renders_and_negatives_intact(dataset):
    entries = plan_volumes(TINY)
    for rec in _records(dataset):
        volume = entries[rec["volume"]].load(TINY.phantom_shape)
        assert (rec["fracture"] is not None) == (rec["label"] == 1)
        change = []
        for path, vec in zip(rec["images"], rec["views"], strict=True):
            view = View.from_vector(vec, (32, 32))
            intact = to_uint8(project(volume.to_mu(TINY.views.mu_water), view)).astype(int)
            stored = np.asarray(Image.open(dataset / path), dtype=int)
            change.append(np.abs(stored - intact).max())
        if rec["label"] == 0:
            assert max(change) <= 1
        else:
            # The fracture shows in the study (a thin gap can be faint in one 32 px view).
            assert max(change) > 10 and min(change) > 2


def test_rerun_keeps_and_conflicts_are_refused(dataset):
    mtime = (dataset / "studies.csv").stat().st_mtime_ns
    assert write_fracture_dataset(dataset, TINY, progress=False) == dataset
    assert (dataset / "studies.csv").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="not a complete fracture dataset"):
        write_fracture_dataset(dataset, replace(TINY, seed=1), progress=False)


def test_volume_split_rule():
    names = split_volumes(24, 0.15, 0.25, seed=0)
    assert (names.count("train"), names.count("val"), names.count("test")) == (14, 4, 6)
    assert names == split_volumes(24, 0.15, 0.25, seed=0)
    assert split_volumes(3, 0.2, 0.2, seed=0).count("train") == 1


def test_preview_rings_the_fracture_where_the_render_changed(dataset, tmp_path):
    # The ring (pinhole projection of the recorded cut point) must sit on the pixels that the
    # fracture changed; and the contact sheet is written.
    entries = plan_volumes(TINY)
    for rec in _records(dataset):
        if rec["label"] != 1:
            continue
        volume = entries[rec["volume"]].load(TINY.phantom_shape)
        for k, (path, vec) in enumerate(zip(rec["images"], rec["views"], strict=True)):
            view = View.from_vector(vec, (32, 32))
            intact = to_uint8(project(volume.to_mu(TINY.views.mu_water), view)).astype(int)
            diff = np.abs(np.asarray(Image.open(dataset / path), dtype=int) - intact)
            changed = np.argwhere(
                diff > 0.2 * diff.max()
            )  # a displaced fragment changes most at its ends
            rc = fracture_pixel(rec, k, (32, 32))
            # Within 4.5 px of 32 (measured up to 4.1 since the 2026-12 phantoms): the cut point
            # is where the fragment starts, the largest changes can sit along it.
            assert np.min(np.linalg.norm(changed - rc, axis=1)) < 4.5, rec["study_id"]
    png = draw_studies(dataset, tmp_path / "preview.png", per_label=2, split="train")
    assert Image.open(png).size[0] > 300


def test_preview_picks_one_study_per_volume_first():
    from drrgen.viz.studies import _pick

    recs = [
        dict(label=1, split="test", volume=v, study_id=f"{v}_{i}") for v in (0, 1) for i in (0, 1)
    ]
    assert [r["study_id"] for r in _pick(recs, 1, 3, "test")] == ["0_0", "1_0", "0_1"]
    assert _pick(recs, 0, 3, "test") == [] and len(_pick(recs, 1, 9, "test")) == 4


def test_a_fracture_that_changes_nothing_is_never_a_positive(tmp_path):
    from drrgen.fracture import FractureConfig

    blank = FractureConfig(kinds=("gap",), kind_probs=(1.0,), gap_mm=(0.0, 0.0))  # empty slab
    cfg = replace(TINY, phantoms=1, val_fraction=0.0, test_fraction=0.0, fracture=blank)
    with pytest.raises(ValueError, match="changed no voxel"):
        write_fracture_dataset(tmp_path / "fx", cfg, progress=False, workers=1)
