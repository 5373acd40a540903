"""GRAZPEDWRI-DX as distributed: dataset.csv + PNGs below the root, studies per exam and side."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from xmatch_train.config import load_config
from xmatch_train.finetune import FinetuneConfig, read_grazpedwri
from xmatch_train.finetune.studies import StudyDataError
from xmatch_train.finetune.task import load_studies

from .conftest import random_image, write_png

HEADER = ["filestem", "patient_id", "gender", "age", "laterality", "projection",
          "diagnosis_uncertain", "fracture_visible", "metal", "ao_classification"]  # fmt: skip


def _rows():
    # (patient, exam, image no, side, projection, fracture_visible)
    return [
        ("0001", "1111", "01", "L", 1, "1.0"),  # exam 1111 left: AP + lateral, fractured
        ("0001", "1111", "02", "L", 2, ""),
        ("0001", "1111", "05", "L", 3, ""),  # oblique: not one of the AP/lateral views
        ("0001", "2222", "01", "L", 2, ""),  # a later exam of the same wrist: intact
        ("0001", "2222", "02", "L", 1, ""),
        ("0002", "3333", "01", "R", 1, ""),  # right wrist, one image only: dropped
        ("0003", "4444", "03", "R", 2, "1.0"),
        ("0003", "4444", "01", "R", 1, ""),
        ("0003", "4444", "02", "L", 1, ""),  # same exam, other side: its own 1-image study
    ]


@pytest.fixture()
def graz_tree(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    with open(tmp_path / "dataset.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for k, (patient, exam, no, side, proj, frac) in enumerate(_rows()):
            stem = f"{patient}_{exam}_{no}_WRI-{side}{proj}_M010"
            w.writerow([stem, patient, "M", "10", side, proj, "", frac, "", ""])
            part = f"images_part{1 + k % 2}"  # the distributed zips unpack into parts
            write_png(tmp_path / part / f"{stem}.png", random_image(rng))
    return tmp_path


def test_studies_are_exams_per_side_ap_first_label_any_image(graz_tree):
    studies = {s.study_id: s for s in read_grazpedwri(graz_tree, test_fraction=0.0)}
    assert sorted(studies) == ["0001_1111_L", "0001_2222_L", "0003_4444_R"]
    assert studies["0001_1111_L"].label == 1 and studies["0001_2222_L"].label == 0
    assert studies["0003_4444_R"].label == 1  # the lateral view shows it
    for s in studies.values():  # AP (projection 1) first, then lateral
        assert [Path(p).name.split("_")[3][-1] for p in s.images] == ["1", "2"]  # no oblique
        assert all(Path(p).is_file() for p in s.images) and s.part == "WRIST"
    assert {s.split for s in studies.values()} == {"train"}


def test_split_by_patient_and_through_the_config(graz_tree):
    studies = read_grazpedwri(graz_tree, test_fraction=0.5, seed=0)
    by_patient = {}
    for s in studies:
        by_patient.setdefault(s.patient, set()).add(s.split)
    assert all(len(v) == 1 for v in by_patient.values())  # a patient never straddles splits
    assert {"train", "test"} == {s.split for s in studies}
    cfg = load_config(
        None,
        [f"data.root={graz_tree}", "data.format=grazpedwri", "data.test_fraction=0.5"],
        cls=FinetuneConfig,
    )
    loaded = load_studies(cfg)
    assert [s.study_id for s in loaded] == [s.study_id for s in studies]
    assert "val" in {s.split for s in loaded} or len(by_patient) < 3


def test_errors_name_the_file(graz_tree, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(StudyDataError, match="no dataset.csv"):
        read_grazpedwri(empty)
    (empty / "dataset.csv").write_text("filestem,patient_id\nx,1\n")
    with pytest.raises(StudyDataError, match=r"dataset.csv: missing column\(s\)"):
        read_grazpedwri(empty)
    next(graz_tree.rglob("0003_4444_03_*.png")).unlink()
    with pytest.raises(
        StudyDataError, match=r"line 8: image 0003_4444_03_WRI-R2_M010.png not found"
    ):
        read_grazpedwri(graz_tree)
