"""Multi-view studies for fracture classification: MURA v1.1, a generic CSV, splits, 2-view rule.

A `Study` is one patient examination with two or more radiographs and one label (1 = abnormal /
fractured). Two readers build them:

* `read_mura`: MURA v1.1 exactly as distributed (``MURA-v1.1/{train,valid}/XR_<PART>/
  patientNNNNN/studyK_{positive,negative}/imageK.png``, the header-less
  ``{train,valid}_image_paths.csv`` with one path per line starting with ``MURA-v1.1/``, and
  ``{train,valid}_labeled_studies.csv`` with ``study_dir/,label`` lines). The study label comes
  from the labeled-studies file. Official ``train`` stays training data, minus a validation
  hold-out carved by patient; the official ``valid`` split (the test set is hidden) is the test
  set.
* `read_grazpedwri`: GRAZPEDWRI-DX (Nagy et al., Sci Data 2022; figshare 14825193, CC BY 4.0):
  paediatric wrist radiographs, ``dataset.csv`` with one row per image (``filestem``,
  ``patient_id``, ``laterality`` L/R, ``projection`` 1 = AP / 2 = lateral, ``fracture_visible``
  1 or empty) and the PNGs anywhere below the root (``images/`` or the distributed
  ``images_part*/`` folders). A study is the images of one patient, one examination (the
  second field of the file stem) and one side; its views are the AP and lateral images (AP
  first; obliques and other projections are left out), its label is 1 when any of its images,
  obliques included, shows a visible fracture. Studies are split by patient: ``test_fraction`` of
  the patients (seeded) is the test set, the rest training (validation is carved from it).
* `read_study_csv`: the generic format for private data, a CSV with a header::

      study_id,label,split,patient,images
      s001,1,train,p01,s001/ap.png;s001/lat.png

  ``images`` holds ';'-separated paths (relative to the CSV's folder, or absolute); instead of
  ``images``, an ``image`` column with one row per image (``study_id`` repeated) works too.
  ``split`` (train / val / test) and ``patient`` are optional: without ``split`` every study is
  training data; a validation hold-out is carved from training by ``patient`` (default: the
  study id) when there are no ``val`` rows.

Two-view rule (`choose_pair`): a study's images are sorted in natural order (``image2`` before
``image10``); training draws a random ordered pair of distinct images each time a study is
visited; evaluation always uses the first two images of the sorted list.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
MURA_PARTS = ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")
MURA_DIR = "MURA-v1.1"
_MURA_STUDY = re.compile(r"XR_([A-Z]+)/(patient\d+)/(study\d+_(?:positive|negative))/?$")


@dataclass(frozen=True)
class Study:
    """One multi-view study.

    Attributes:
        study_id: unique id (MURA: the study folder relative to the dataset root).
        images: absolute image paths in natural order.
        label: 1 abnormal / fractured, 0 normal.
        split: ``train``, ``val`` or ``test``.
        patient: patient (or volume) id; splits never separate a patient's studies.
        part: body part (MURA: ``ELBOW``...; empty when unknown).
    """

    study_id: str
    images: tuple[str, ...]
    label: int
    split: str
    patient: str
    part: str = ""


class StudyDataError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


def natural_key(path: str) -> list:
    """Sort key that orders digit runs numerically (``image2`` < ``image10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def choose_pair(n_images: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """Indices of the two views of a study with `n_images` >= 2 (naturally sorted) images.

    Args:
        n_images: images in the study.
        rng: a generator for a random ordered pair (training), None for the fixed pair (0, 1)
            (evaluation).
    """
    if n_images < 2:
        raise ValueError(f"a study needs at least 2 images, got {n_images}")
    if rng is None:
        return 0, 1
    i, j = rng.choice(n_images, size=2, replace=False)
    return int(i), int(j)


def carve_validation(studies: list[Study], fraction: float, seed: int) -> list[Study]:
    """Move a `fraction` of the training patients (seeded) and all their studies to ``val``.

    Nothing changes when `fraction` is 0 or the studies already have a ``val`` split.
    """
    if fraction <= 0 or any(s.split == "val" for s in studies):
        return studies
    patients = sorted({s.patient for s in studies if s.split == "train"})
    n_val = int(round(fraction * len(patients)))
    if len(patients) >= 2:
        n_val = min(max(n_val, 1), len(patients) - 1)
    order = np.random.default_rng([seed, 17]).permutation(len(patients))
    chosen = {patients[i] for i in order[:n_val]}
    return [
        replace(s, split="val") if s.split == "train" and s.patient in chosen else s
        for s in studies
    ]


def _read_lines(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    except OSError as err:
        raise StudyDataError(f"{path}: cannot read ({err.strerror})") from err


def mura_root(root: str | Path) -> Path:
    """The folder that contains ``MURA-v1.1`` (`root` may be that folder or MURA-v1.1)."""
    root = Path(root).expanduser()
    if (root / MURA_DIR).is_dir():
        return root
    if root.name == MURA_DIR and root.is_dir():
        return root.parent
    raise StudyDataError(
        f"{root}: no {MURA_DIR} folder here; download MURA v1.1 (Stanford AIMI) and point "
        "data.root at the folder that contains MURA-v1.1"
    )


def read_mura(
    root: str | Path,
    parts: tuple[str, ...] = ("ELBOW", "FOREARM", "HAND", "WRIST"),
    min_views: int = 2,
    check_files: bool = True,
) -> list[Study]:
    """MURA v1.1 studies of the chosen body parts with at least `min_views` images.

    Args:
        root: folder containing ``MURA-v1.1`` (or the ``MURA-v1.1`` folder itself).
        parts: body parts (``XR_<PART>``), case-insensitive.
        min_views: studies with fewer images are dropped.
        check_files: raise if a listed image file is missing.

    Returns:
        Studies with split ``train`` (official train) or ``test`` (official valid), sorted by id.

    Raises:
        StudyDataError: missing CSVs, malformed lines, unknown parts, missing images.
    """
    base = mura_root(root)
    wanted = {p.upper() for p in parts}
    unknown = wanted - set(MURA_PARTS)
    if unknown:
        raise StudyDataError(f"unknown MURA body part(s) {sorted(unknown)}; known: {MURA_PARTS}")
    studies = []
    for official, split in (("train", "train"), ("valid", "test")):
        labels_csv = base / MURA_DIR / f"{official}_labeled_studies.csv"
        paths_csv = base / MURA_DIR / f"{official}_image_paths.csv"
        labels: dict[str, int] = {}
        for n, row in enumerate(_read_lines(labels_csv), start=1):
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise StudyDataError(
                    f"{labels_csv}, line {n}: expected 'study_dir/,0|1', got {row}"
                )
            labels[row[0].strip().rstrip("/")] = int(row[1])
        images: dict[str, list[str]] = {}
        for n, row in enumerate(_read_lines(paths_csv), start=1):
            rel = row[0].strip()
            if not rel.startswith(MURA_DIR + "/"):
                raise StudyDataError(
                    f"{paths_csv}, line {n}: path {rel!r} does not start with {MURA_DIR}/"
                )
            images.setdefault(rel.rsplit("/", 1)[0], []).append(rel)
        for study_dir, label in labels.items():
            m = _MURA_STUDY.search(study_dir)
            if m is None:
                raise StudyDataError(f"{labels_csv}: unexpected study folder {study_dir!r}")
            part, patient, _ = m.groups()
            files = sorted(images.get(study_dir, []), key=natural_key)
            if part not in wanted or len(files) < min_views:
                continue
            absolute = tuple(str(base / f) for f in files)
            if check_files:
                for f in absolute:
                    if not Path(f).is_file():
                        raise StudyDataError(f"{paths_csv}: listed image {f} does not exist")
            studies.append(Study(study_dir, absolute, label, split, f"{official}/{patient}", part))
    return sorted(studies, key=lambda s: natural_key(s.study_id))


def _column(header: list[str], name: str) -> int | None:
    return header.index(name) if name in header else None


def read_study_csv(path: str | Path, min_views: int = 2, check_files: bool = True) -> list[Study]:
    """Studies from a generic study CSV (see the module docstring).

    Args:
        path: the CSV file, or a folder containing ``studies.csv``.
        min_views: studies with fewer images are dropped.
        check_files: raise if an image file is missing.

    Raises:
        StudyDataError: missing columns, bad labels or splits, conflicting rows, missing images.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "studies.csv"
    rows = _read_lines(path)
    if not rows:
        raise StudyDataError(f"{path}: empty file")
    header = [c.strip().lower() for c in rows[0]]
    col = {name: _column(header, name) for name in ("study_id", "label", "split", "patient")}
    col_images, col_image = _column(header, "images"), _column(header, "image")
    if (
        col["study_id"] is None
        or col["label"] is None
        or (col_images is None and col_image is None)
    ):
        raise StudyDataError(
            f"{path}: header {rows[0]} needs study_id, label and images (or image) columns"
        )
    found: dict[str, dict] = {}
    for n, row in enumerate(rows[1:], start=2):
        cell = dict(zip(header, (c.strip() for c in row), strict=False))
        sid = cell.get("study_id", "")
        label, split = cell.get("label", ""), cell.get("split", "") or "train"
        if not sid or label not in ("0", "1"):
            raise StudyDataError(f"{path}, line {n}: need a study_id and a label 0 or 1, got {row}")
        if split not in SPLITS:
            raise StudyDataError(f"{path}, line {n}: split {split!r} is not one of {SPLITS}")
        paths = cell.get("images") or cell.get("image") or ""
        files = [p.strip() for p in paths.split(";") if p.strip()]
        entry = found.setdefault(
            sid, dict(label=int(label), split=split, patient=cell.get("patient") or sid, images=[])
        )
        if (entry["label"], entry["split"]) != (int(label), split):
            raise StudyDataError(f"{path}, line {n}: study {sid} has conflicting label or split")
        entry["images"] += [str(f if Path(f).is_absolute() else path.parent / f) for f in files]
    studies = []
    for sid, e in found.items():
        files = tuple(sorted(dict.fromkeys(e["images"]), key=natural_key))
        if len(files) < min_views:
            continue
        if check_files:
            for f in files:
                if not Path(f).is_file():
                    raise StudyDataError(f"{path}: image {f} of study {sid} does not exist")
        studies.append(Study(sid, files, e["label"], e["split"], e["patient"]))
    return sorted(studies, key=lambda s: natural_key(s.study_id))


GRAZ_COLUMNS = ("filestem", "patient_id", "laterality", "projection", "fracture_visible")


def _graz_index(root: Path) -> dict[str, str]:
    """File stem -> PNG path for every PNG below `root`."""
    return {p.stem: str(p) for p in root.rglob("*.png")}


def read_grazpedwri(
    root: str | Path,
    min_views: int = 2,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_files: bool = True,
) -> list[Study]:
    """GRAZPEDWRI-DX studies with at least `min_views` images (see the module docstring).

    Args:
        root: the dataset folder (containing ``dataset.csv`` and the images).
        min_views: studies with fewer images are dropped.
        test_fraction: patients held out as the test set.
        seed: seed of that hold-out.
        check_files: raise if an image of ``dataset.csv`` is not found below `root`.

    Raises:
        StudyDataError: no ``dataset.csv``, missing columns, malformed rows, missing images.
            Rows with a projection other than 1 (AP) or 2 (lateral) are skipped.
    """
    root = Path(root).expanduser()
    table = root / "dataset.csv"
    if not table.is_file():
        raise StudyDataError(
            f"{root}: no dataset.csv; download GRAZPEDWRI-DX (figshare 14825193) and point "
            "data.root at the folder with dataset.csv and the images"
        )
    rows = _read_lines(table)
    header = [c.strip().lower() for c in rows[0]] if rows else []
    missing = [c for c in GRAZ_COLUMNS if c not in header]
    if missing:
        raise StudyDataError(f"{table}: missing column(s) {missing} (header {header})")
    files = _graz_index(root)
    groups: dict[tuple, dict] = {}
    for n, row in enumerate(rows[1:], start=2):
        cell = dict(zip(header, (c.strip() for c in row), strict=False))
        stem, side, proj = cell["filestem"], cell["laterality"].upper(), cell["projection"]
        parts = stem.split("_")
        if len(parts) < 3 or side not in ("L", "R"):
            raise StudyDataError(
                f"{table}, line {n}: expected a file stem PATIENT_EXAM_... and laterality L/R, "
                f"got {stem!r}, {side!r}"
            )
        key = (cell["patient_id"], parts[1], side)
        entry = groups.setdefault(key, dict(images=[], label=0))
        if cell["fracture_visible"] not in ("", "0", "0.0", "nan"):
            entry["label"] = 1  # the study's label, whichever of its images shows it
        if proj not in ("1", "2", "1.0", "2.0"):
            continue  # oblique (3) and other projections are not AP/lateral views
        path = files.get(stem)
        if path is None:
            if check_files:
                raise StudyDataError(f"{table}, line {n}: image {stem}.png not found below {root}")
            path = str(root / "images" / f"{stem}.png")
        entry["images"].append((int(float(proj)), natural_key(stem), path))
    patients = sorted({k[0] for k in groups}, key=natural_key)
    order = np.random.default_rng([seed, 23]).permutation(len(patients))
    test = {patients[i] for i in order[: int(round(test_fraction * len(patients)))]}
    studies = []
    for (patient, exam, side), e in groups.items():
        images = tuple(path for _, _, path in sorted(e["images"]))
        if len(images) < min_views:
            continue
        split = "test" if patient in test else "train"
        studies.append(
            Study(f"{patient}_{exam}_{side}", images, e["label"], split, patient, "WRIST")
        )
    return sorted(studies, key=lambda s: natural_key(s.study_id))


def summary(studies: list[Study]) -> dict[str, dict[str, int]]:
    """Per split: studies, positives, patients and images."""
    out = {}
    for name in SPLITS:
        chosen = [s for s in studies if s.split == name]
        out[name] = dict(
            studies=len(chosen),
            positive=sum(s.label for s in chosen),
            patients=len({s.patient for s in chosen}),
            images=sum(len(s.images) for s in chosen),
        )
    return out
