"""MURA v1.1 as distributed, the generic study CSV, validation hold-out, 2-view rule."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from xmatch_train.finetune.studies import (
    StudyDataError,
    carve_validation,
    choose_pair,
    natural_key,
    read_mura,
    read_study_csv,
    summary,
)

from .conftest import random_image, write_png


def test_mura_default_parts_two_views_labels_from_csv(mura_tree):
    studies = read_mura(mura_tree)
    ids = [s.study_id for s in studies]
    assert ids == [
        "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive",
        "MURA-v1.1/train/XR_FOREARM/patient00005/study1_negative",
        "MURA-v1.1/train/XR_HAND/patient00002/study1_negative",
        "MURA-v1.1/train/XR_WRIST/patient00006/study1_negative",
        "MURA-v1.1/valid/XR_HAND/patient00007/study1_positive",
    ]  # no 1-image wrist study, no shoulder
    by_id = {s.study_id.split("/")[3]: s for s in studies}
    assert by_id["patient00005"].label == 1  # the labeled-studies CSV, not the folder name
    assert by_id["patient00001"].label == 1 and by_id["patient00002"].label == 0
    assert [s.split for s in studies] == ["train"] * 4 + ["test"]  # official valid = test
    wrist = by_id["patient00006"]
    assert [Path(p).name for p in wrist.images[:3]] == ["image1.png", "image2.png", "image3.png"]
    assert Path(wrist.images[-1]).name == "image12.png" and all(
        Path(p).is_file() for p in wrist.images
    )
    assert wrist.part == "WRIST" and wrist.patient == "train/patient00006"
    # The MURA-v1.1 folder itself works as root, and parts are selectable.
    assert len(read_mura(mura_tree / "MURA-v1.1", parts=("shoulder",))) == 1


def test_mura_errors_name_the_file(mura_tree, tmp_path):
    with pytest.raises(StudyDataError, match="no MURA-v1.1 folder"):
        read_mura(tmp_path)
    with pytest.raises(StudyDataError, match="unknown MURA body part"):
        read_mura(mura_tree, parts=("KNEE",))
    broken = tmp_path / "MURA-v1.1"
    broken.mkdir()
    (broken / "train_labeled_studies.csv").write_text(
        "MURA-v1.1/train/XR_HAND/patient1/study1_negative/,0\n"
    )
    with pytest.raises(StudyDataError, match="train_image_paths.csv: cannot read"):
        read_mura(tmp_path)
    (broken / "train_image_paths.csv").write_text(
        "train/XR_HAND/patient1/study1_negative/image1.png\n"
    )
    with pytest.raises(StudyDataError, match="does not start with MURA-v1.1/"):
        read_mura(tmp_path)


def test_validation_hold_out_is_by_patient():
    from xmatch_train.finetune.studies import Study

    studies = [Study(f"s{i}", ("a", "b"), i % 2, "train", f"p{i // 3}") for i in range(30)] + [
        Study("t0", ("a", "b"), 0, "test", "q")
    ]
    carved = carve_validation(studies, 0.2, seed=0)
    val_patients = {s.patient for s in carved if s.split == "val"}
    train_patients = {s.patient for s in carved if s.split == "train"}
    assert len(val_patients) == 2 and not val_patients & train_patients
    assert carved[-1].split == "test" and carve_validation(studies, 0.2, seed=0) == carved
    assert carve_validation(carved, 0.5, seed=1) == carved  # an existing val split is kept
    assert summary(carved)["val"]["studies"] == 6


def test_generic_csv_both_layouts_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a/1.png", "a/2.png", "b/10.png", "b/9.png", "c/1.png"):
        write_png(tmp_path / name, random_image(rng))
    (tmp_path / "studies.csv").write_text(
        "study_id,label,split,images\na,1,test,a/1.png;a/2.png\nb,0,,b/10.png;b/9.png\n"
        "c,0,train,c/1.png\n"
    )
    studies = read_study_csv(tmp_path)  # the folder works; 'c' has one view: dropped
    assert [(s.study_id, s.label, s.split, s.patient) for s in studies] == [
        ("a", 1, "test", "a"),
        ("b", 0, "train", "b"),
    ]
    assert [Path(p).name for p in studies[1].images] == ["9.png", "10.png"]
    per_image = tmp_path / "per_image.csv"
    with open(per_image, "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["study_id", "image", "label"], ["x", "a/2.png", 1], ["x", "a/1.png", 1]])
    (study,) = read_study_csv(per_image)
    assert [Path(p).name for p in study.images] == ["1.png", "2.png"] and study.label == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("study_id,label,images\nz,2,a/1.png;a/2.png\n", encoding="utf-8")
    with pytest.raises(StudyDataError, match="bad.csv, line 2: need a study_id and a label"):
        read_study_csv(bad)
    bad.write_text("study_id,label,images\nz,1,a/1.png;missing.png\n", encoding="utf-8")
    with pytest.raises(StudyDataError, match="missing.png of study z does not exist"):
        read_study_csv(bad)
    bad.write_text("id,label\n", encoding="utf-8")
    with pytest.raises(StudyDataError, match="needs study_id, label and images"):
        read_study_csv(bad)


def test_two_view_rule():
    assert choose_pair(5, None) == (0, 1)
    rng = np.random.default_rng(0)
    pairs = {choose_pair(3, rng) for _ in range(200)}
    assert pairs == {(i, j) for i in range(3) for j in range(3) if i != j}
    with pytest.raises(ValueError, match="at least 2 images"):
        choose_pair(1, None)
    assert sorted(["image10.png", "image2.png"], key=natural_key) == ["image2.png", "image10.png"]
