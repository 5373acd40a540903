"""Tiny inputs for the fine-tuning tests: a MURA-shaped tree, study CSVs, a ViT pretraining run,
a synthetic fracture dataset (all in temporary folders, built in seconds)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

TINY_VIT = dict(width=32, depth=2, heads=2, mlp_dim=64, patch_size=16)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save an image (uint8 L/RGB or uint16 'I;16') creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16))
    image.save(path)
    return path


def random_image(rng: np.random.Generator, shape=(40, 32), rgb: bool = False) -> np.ndarray:
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return np.repeat(img[..., None], 3, axis=2) if rgb else img


@pytest.fixture(scope="session")
def mura_tree(tmp_path_factory) -> Path:
    """A MURA v1.1-shaped tree: header-less CSVs, paths starting with MURA-v1.1/.

    Studies (official train): ELBOW p1 study1 positive (3 images, RGB among them), HAND p2
    study1 negative (2), WRIST p3 study1 positive (1 image: dropped), SHOULDER p4 study1
    negative (2: not a default part), FOREARM p5 study1_negative labelled 1 in the CSV (the CSV
    wins), WRIST p6 study1 negative (12 images: natural order); valid: HAND p7 study1
    positive (2 images).
    """
    root = tmp_path_factory.mktemp("mura")
    base = root / "MURA-v1.1"
    rng = np.random.default_rng(0)
    studies = [
        ("train", "XR_ELBOW", "patient00001", "study1_positive", 3, 1),
        ("train", "XR_HAND", "patient00002", "study1_negative", 2, 0),
        ("train", "XR_WRIST", "patient00003", "study1_positive", 1, 1),
        ("train", "XR_SHOULDER", "patient00004", "study1_negative", 2, 0),
        ("train", "XR_FOREARM", "patient00005", "study1_negative", 2, 1),
        ("train", "XR_WRIST", "patient00006", "study1_negative", 12, 0),
        ("valid", "XR_HAND", "patient00007", "study1_positive", 2, 1),
    ]
    lines = {"train": ([], []), "valid": ([], [])}
    for split, part, patient, study, n, label in studies:
        rel = f"MURA-v1.1/{split}/{part}/{patient}/{study}/"
        lines[split][1].append([rel, label])
        for k in range(1, n + 1):
            rgb = part == "XR_ELBOW" and k == 2
            write_png(root / rel / f"image{k}.png", random_image(rng, rgb=rgb))
            lines[split][0].append([rel + f"image{k}.png"])
    for split, (paths, labels) in lines.items():
        with open(base / f"{split}_image_paths.csv", "w", newline="") as f:
            csv.writer(f).writerows(paths)
        with open(base / f"{split}_labeled_studies.csv", "w", newline="") as f:
            csv.writer(f).writerows(labels)
    return root


def write_easy_studies(root: Path, n: int = 40, size: int = 32, seed: int = 0) -> Path:
    """A generic study CSV where abnormal studies show a bright square in one view.

    Splits: 60 % train, 20 % val, 20 % test (by study); two or three views per study.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        label = s % 2
        files = []
        views = 2 + (s % 3 == 0)
        marked = int(rng.integers(views))
        for v in range(views):
            img = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
            if label and v == marked or label and views == 2:
                r, c = rng.integers(0, size - 12, size=2)
                img[r : r + 12, c : c + 12] = 255
            name = f"img/s{s:03d}_{v}.png"
            write_png(root / name, img)
            files.append(name)
        split = "train" if s < 0.6 * n else ("val" if s < 0.8 * n else "test")
        rows.append([f"s{s:03d}", label, split, f"p{s}", ";".join(files)])
    path = root / "studies.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["study_id", "label", "split", "patient", "images"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def easy_studies(tmp_path_factory) -> Path:
    return write_easy_studies(tmp_path_factory.mktemp("easy"))


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory) -> Path:
    """A 4-step ``vit_s`` correspondence pretraining (64 px views, 16 px patches: 4 x 4 grid)."""
    from xmatch_train.config import load_config
    from xmatch_train.pretrain import pretrain
    from xmatch_train.testing import build_toy_store

    root = tmp_path_factory.mktemp("pre")
    store = build_toy_store(root / "s.zarr", root / "cts", n_volumes=3, samples_per_volume=4)
    cfg = {
        "run_dir": str(root / "run"),
        "data": {"stores": [str(store)], "batch_size": 4, "num_workers": 0, "buffer": 8,
                 "val_fraction": 0.3, "test_fraction": 0.0},
        "model": {"name": "vit_s", "img_size": 64, **TINY_VIT},
        "optim": {"lr": 1e-3},
        "train": {"steps": 4, "log_every": 2, "val_every": 4, "val_batches": 1, "threads": 1},
    }  # fmt: skip
    path = root / "pre.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return pretrain(load_config(path))


@pytest.fixture(scope="session")
def fracture_dataset(tmp_path_factory) -> Path:
    """The real synthetic fracture writer, tiny: 4 phantoms x 6 studies of 32 px views."""
    from drrgen.fracture.dataset import (
        FractureDatasetConfig,
        StudyViewConfig,
        write_fracture_dataset,
    )

    cfg = FractureDatasetConfig(
        phantoms=4,
        phantom_shape=(64, 64, 80),
        studies_per_volume=6,
        val_fraction=0.25,
        test_fraction=0.25,
        views=StudyViewConfig(size=32, fov_mm=(40.0, 60.0)),
    )
    out = tmp_path_factory.mktemp("fx") / "fracture"
    return write_fracture_dataset(out, cfg, progress=False)


def finetune_config(root, run_dir: Path, **sections) -> dict:
    """A tiny fine-tuning config dict (64 px, tiny ViT) on the study CSV at `root`."""
    cfg = {
        "run_dir": str(run_dir),
        "data": {"format": "csv", "root": str(root), "image_size": 64, "batch_size": 4,
                 "num_workers": 0, "cache_images": True},
        "model": dict(TINY_VIT),
        "optim": {"lr": 1e-3},
        "train": {"steps": 6, "log_every": 1, "val_every": 3, "ckpt_every": 100, "threads": 1},
    }  # fmt: skip
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg
