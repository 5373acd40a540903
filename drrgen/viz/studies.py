"""`draw_studies`: a contact sheet of a study folder (e.g. `drrgen fracture`'s), to check by eye.

Columns are studies (fractured first, then intact, from one split); rows are their two views.
Where ``studies.jsonl`` records a fracture, its cut point is projected into each view with the
pinhole geometry of the stored view vectors and ringed in red: the break must sit inside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from drrgen.geometry import View
from drrgen.viz import figure


def _pick(records: list[dict], label: int, n: int, split: str) -> list[dict]:
    """Up to `n` records of `label` in `split`: one per volume first, then any."""
    pool = [r for r in records if r["label"] == label and r["split"] == split]
    first, seen = [], set()
    for r in pool:
        if r["volume"] not in seen:
            first.append(r)
            seen.add(r["volume"])
    taken = {id(r) for r in first}
    rest = [r for r in pool if id(r) not in taken]
    return (first + rest)[:n]


def fracture_pixel(record: dict, view_index: int, shape: tuple[int, int]) -> np.ndarray | None:
    """(row, col) of the recorded fracture point in one view of a study, or None if intact."""
    if not record.get("fracture"):
        return None
    view = View.from_vector(record["views"][view_index], shape)
    return view.project_points(np.asarray(record["fracture"]["point"], dtype=np.float64))


def draw_studies(folder: str | Path, out: str | Path, per_label: int = 4, split: str = "test"):
    """Write a PNG of `per_label` fractured and `per_label` intact studies of `split`.

    Args:
        folder: a study folder with ``studies.jsonl`` (from `write_fracture_dataset`).
        out: PNG path.
        per_label: studies per label (fewer if the split has fewer).
        split: ``train``, ``val`` or ``test``.

    Returns:
        `out` as a Path.

    Raises:
        FileNotFoundError: no ``studies.jsonl`` in `folder`.
        ValueError: the split holds no study.
    """
    folder, out = Path(folder), Path(out)
    lines = (folder / "studies.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    chosen = _pick(records, 1, per_label, split) + _pick(records, 0, per_label, split)
    if not chosen:
        raise ValueError(f"{folder}: no study in split {split!r}")
    fig, axes = figure.subplots(2, len(chosen), figsize=(2.2 * len(chosen), 4.8), squeeze=False)
    for col, rec in enumerate(chosen):
        for row, path in enumerate(rec["images"][:2]):
            image = np.asarray(Image.open(folder / path))
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
            rc = fracture_pixel(rec, row, image.shape)
            if rc is not None and np.all(np.isfinite(rc)):
                ring = plt.Circle((rc[1], rc[0]), 0.08 * image.shape[0], fill=False, color="red")
                ax.add_patch(ring)
            if row == 0:
                kind = rec["fracture"]["kind"] if rec.get("fracture") else "intact"
                ax.set_title(f"{rec['study_id']}\nlabel {rec['label']} ({kind})", fontsize=8)
    fig.suptitle(f"{folder.name}: {split} studies, fracture point ringed in red", fontsize=9)
    fig.tight_layout()
    return figure.save(fig, out, dpi=100)


__all__ = ["draw_studies", "fracture_pixel"]
