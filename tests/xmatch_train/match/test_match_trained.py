"""`xmatch match` with a trained default run on DRRs of its test CTs exported to PNG: the best
match of most query patches lies within one patch of a true correspondence (slow; skipped
without a trained run).

The run: ``XMATCH_MATCH_RUN`` or, from the repository root, ``runs/table1_500/transformer`` or
``runs/pretrain_cpu/transformer``; its store is looked up as its config names it, from the
current folder or the run's parent folders. ``XMATCH_MATCH_PER_CT`` pairs per test CT (4).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.data import load_split, read_meta, sample_mask
from xmatch_train.match import load_matcher, top1_within, write_png

ROOT = Path(__file__).resolve().parents[3]
RUNS = ("runs/table1_500/transformer", "runs/pretrain_cpu/transformer")


def _trained_run() -> Path | None:
    env = os.environ.get("XMATCH_MATCH_RUN")
    for run in [Path(env)] if env else [ROOT / r for r in RUNS]:
        if (run / "ckpt" / "best.pt").is_file() or (run / "ckpt" / "last.pt").is_file():
            return run
    return None


def _store(run: Path, name: str) -> Path | None:
    for base in (Path.cwd(), ROOT, *run.resolve().parents):
        if (base / name / "zarr.json").is_file():
            return base / name
    return None


def _test_samples(meta, run: Path, per_ct: int) -> list[int]:
    """The first `per_ct` samples of each test CT of the run."""
    mask = sample_mask(meta, load_split(run / "split.json").keys("test"))
    chosen = []
    for vid in np.unique(meta.volume_id[mask]):
        chosen += np.flatnonzero(mask & (meta.volume_id == vid))[:per_ct].tolist()
    return chosen


def _export(store: Path, samples: list[int], folder: Path) -> tuple[Path, list[np.ndarray]]:
    """Both views of each sample as 16-bit PNGs, a pairs CSV, and the true C of each pair."""
    group = zarr.open_group(str(store), mode="r")
    rows, targets = ["a,b,name"], []
    for s in samples:
        views = np.asarray(group["views"][s], dtype=np.float32)  # (2, H, W) line integrals
        for v in (0, 1):
            write_png(views[v], folder / f"s{s}_v{v}.png")
        rows.append(f"s{s}_v0.png,s{s}_v1.png,s{s}")
        targets.append(np.asarray(group["corr"][s, 0], dtype=np.float32))  # (N, N)
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "pairs.csv", targets


def _trained():
    """(run, its matcher, its store, the store's meta), or skip when they are not here."""
    run = _trained_run()
    if run is None:
        pytest.skip(f"no trained run ({' or '.join(RUNS)}, or XMATCH_MATCH_RUN)")
    matcher = load_matcher(run)
    store = _store(run, matcher.cfg.data.stores[0])
    if store is None:
        pytest.skip(f"{run}: its store {matcher.cfg.data.stores[0]} is not here")
    return run, matcher, store, read_meta(str(store))


@pytest.mark.slow
def test_top1_matches_of_a_trained_run_fall_within_one_patch_of_the_truth(tmp_path):
    run, matcher, store, meta = _trained()
    assert tuple(meta.grid) == matcher.grid
    samples = _test_samples(meta, run, int(os.environ.get("XMATCH_MATCH_PER_CT", "4")))
    csv, targets = _export(store, samples, tmp_path / "pngs")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["match", "--pairs", str(csv), "--run", str(run), "--out", str(out), "--save-matrix",
         "--no-figure"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hits = np.zeros((2, 2, 2), int)  # (model / mean matrix, radius 1 / 0, hits / queries)
    for s, target in zip(samples, targets, strict=True):
        pred = np.load(out / f"s{s}" / "matrix.npy")
        for m, matrix in enumerate((pred, matcher.train_mean)):
            for r, radius in enumerate((1, 0)):
                hits[m, r] += top1_within(matrix, target, matcher.grid, radius=radius)
    frac = hits[..., 0] / hits[..., 1]  # (2, 2)
    print(
        f"\n{run}: {len(samples)} test pairs, {hits[0, 0, 1]} query patches (true C > 0.2); "
        f"top-1 within one patch of a true correspondence: model {100 * frac[0, 0]:.1f} %, "
        f"training mean matrix {100 * frac[1, 0]:.1f} %; on one: model {100 * frac[0, 1]:.1f} "
        f"%, mean matrix {100 * frac[1, 1]:.1f} %"
    )
    assert frac[0, 0] > 0.5


@pytest.mark.slow
def test_an_image_matched_with_its_mirror_finds_the_mirrored_patch(tmp_path):
    """Issue 13's acceptance check: A against fliplr(A). The true match of patch (r, c) is
    (r, cols - 1 - c), one to one; the queries are A's patches that show tissue (a true
    correspondence in A's own stored pair), scored as the trained-run test above."""
    run, matcher, store, meta = _trained()
    samples = _test_samples(meta, run, int(os.environ.get("XMATCH_MATCH_PER_CT", "4")))
    group = zarr.open_group(str(store), mode="r")
    rows, cols = matcher.grid
    mirror = np.arange(rows * cols).reshape(rows, cols)[:, ::-1].ravel()  # (N,) b of each a
    lines = ["a,b,name"]
    tissue = {}
    for s in samples:
        view = np.asarray(group["views"][s, 0], dtype=np.float32)  # (H, W) line integrals
        write_png(view, tmp_path / f"s{s}.png")
        write_png(np.ascontiguousarray(view[:, ::-1]), tmp_path / f"s{s}_mirror.png")
        lines.append(f"s{s}.png,s{s}_mirror.png,s{s}")
        tissue[s] = (np.asarray(group["corr"][s, 0], dtype=np.float32) > 0.2).any(axis=1)
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["match", "--pairs", str(tmp_path / "pairs.csv"), "--run", str(run), "--out"]
    result = CliRunner().invoke(app, [*args, str(out), "--save-matrix", "--no-figure"])
    assert result.exit_code == 0, result.output
    hits = np.zeros((2, 2), int)  # (model / mean matrix, hits / queries)
    for s in samples:
        target = np.zeros((rows * cols,) * 2, np.float32)  # (N, N) the mirror's matches
        target[np.flatnonzero(tissue[s]), mirror[tissue[s]]] = 1.0
        pred = np.load(out / f"s{s}" / "matrix.npy")
        for m, matrix in enumerate((pred, matcher.train_mean)):
            hits[m] += top1_within(matrix, target, matcher.grid, radius=1)
    frac = hits[:, 0] / hits[:, 1]
    print(
        f"\n{run}: {len(samples)} images against their mirror images, {hits[0, 1]} query "
        f"patches; top-1 within one patch of the mirrored patch: model {100 * frac[0]:.1f} %, "
        f"training mean matrix {100 * frac[1]:.1f} %"
    )
    assert frac[0] > 0.5
