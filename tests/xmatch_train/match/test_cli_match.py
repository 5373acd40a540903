"""`xmatch match` end to end on two DRRs of a toy store (their true C known) with a tiny run:
outputs, the matrix against the model run directly, boxes, the query, the CSV batch mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from xmatch_train.cli import app
from xmatch_train.data.batch import display
from xmatch_train.match import load_matcher, prepare, read_image, top1_within


def _cli(*args):
    return CliRunner().invoke(app, ["match", *map(str, args)])


@pytest.fixture(scope="module")
def matched(tiny_run, drr_pngs, tmp_path_factory):
    """`xmatch match A B --query --save-matrix` on the two DRR PNGs."""
    out = tmp_path_factory.mktemp("matched")
    result = _cli(drr_pngs["a"], drr_pngs["b"], "--run", tiny_run, "--out", out, "--query",
                  "40,70", "--save-matrix")  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "matches.json").read_text())


def test_it_writes_the_figure_the_json_and_the_matrix(matched):
    out, record = matched
    for name in ("matches.png", "query.png", "matrix.npy"):
        assert (out / name).stat().st_size > 0
    assert Image.open(out / "matches.png").size[0] > 500
    assert np.load(out / "matrix.npy").shape == (16, 16)
    assert record["grid"] == [4, 4] and record["image_size"] == 64
    assert record["a"]["shape"] == [128, 128] and record["a"]["bits"] == 16


def test_the_matrix_is_the_models_prediction_on_the_prepared_views(matched, tiny_run, drr_pngs):
    out, _ = matched
    matcher = load_matcher(tiny_run)
    a, b = (prepare(read_image(drr_pngs[k]), 64) for k in "ab")
    with torch.no_grad():
        direct = matcher.model(a.tensor(), b.tensor())["corr"][0].numpy()
        # the training path: the store's line integrals, windowed, pooled 128 -> 64
        views = torch.from_numpy(drr_pngs["views"])[:, None]  # (2, 1, 128, 128)
        x = F.avg_pool2d(display(views, matcher.display), 2)  # (2, 1, 64, 64)
        trained = matcher.model(x[:1], x[1:])["corr"][0].numpy()
    saved = np.load(out / "matrix.npy")
    np.testing.assert_allclose(saved, direct, atol=1e-6)
    np.testing.assert_allclose(a.image, x[0, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(saved, trained, atol=1e-3)
    assert top1_within(saved, drr_pngs["corr"], (4, 4), radius=3)[1] > 0  # C has queries


def test_every_patch_of_a_has_its_top_k_with_boxes_inside_both_images(matched):
    out, record = matched
    corr = np.load(out / "matrix.npy")
    assert [p["patch"] for p in record["patches"]] == list(range(16))
    for p in record["patches"]:
        r, c = p["row"], p["col"]
        assert p["box_a"] == [32.0 * c, 32.0 * r, 32.0 * (c + 1), 32.0 * (r + 1)]
        scores = [m["score"] for m in p["matches"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        best = p["matches"][0]
        assert best["patch"] == int(np.argmax(corr[p["patch"]]))
        assert best["score"] == pytest.approx(corr[p["patch"]].max(), abs=1e-5)
        for m in p["matches"]:
            x0, y0, x1, y1 = m["box_b"]
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128


def test_the_query_point_gives_its_patch_row_on_b(matched):
    out, record = matched
    corr = np.load(out / "matrix.npy")
    q = record["query"]
    assert q["point"] == [40.0, 70.0] and q["patch"] == 2 * 4 + 1  # row 70 // 32, col 40 // 32
    assert q["box_a"] == [32.0, 64.0, 64.0, 96.0]
    top = np.argsort(-corr[q["patch"]], kind="stable")[:5]
    assert [m["patch"] for m in q["matches"]] == top.tolist()


def test_a_non_square_image_is_padded_and_its_boxes_stay_inside(tmp_path, tiny_run, drr_pngs):
    narrow = tmp_path / "narrow.png"
    Image.open(drr_pngs["a"]).crop((20, 0, 100, 128)).save(narrow)  # 80 wide, 128 high
    result = _cli(narrow, drr_pngs["b"], "--run", tiny_run, "--out", tmp_path / "o", "--top-k", 2)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "matches.json").read_text())
    assert record["a"]["visible_box"] == [0, 0, 80, 128]
    boxes = [p["box_a"] for p in record["patches"]]
    assert len(boxes) == 16  # margins of 24 px: every column of patches shows some image
    assert all(0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 128 for x0, y0, x1, y1 in boxes)


def test_pairs_csv_matches_each_row_and_reports_a_bad_one_in_one_line(tmp_path, tiny_run, drr_pngs):
    (tmp_path / "imgs").mkdir()
    for k in "ab":
        (tmp_path / "imgs" / f"{k}.png").write_bytes(drr_pngs[k].read_bytes())
    csv = tmp_path / "pairs.csv"
    csv.write_text("a,b,name\nimgs/a.png,imgs/b.png,first\nimgs/a.png,imgs/gone.png,\n"
                   "imgs/b.png,imgs/a.png,\n")  # fmt: skip
    out = tmp_path / "out"
    result = _cli("--pairs", csv, "--run", tiny_run, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {csv}:3: {tmp_path / 'imgs' / 'gone.png'}: file not found"]
    assert (out / "first" / "matches.json").is_file()
    assert (out / "0003_b_a" / "matches.png").is_file() and not (out / "0002_a_gone").exists()
    summary = (out / "summary.csv").read_text().splitlines()
    assert [s.split(",")[3] for s in summary[1:]] == ["ok", "failed", "ok"]
    assert "matched 2 of 3 pairs" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--query", "500,3"], "--query 500,3: outside"),
        (["--query", "a,b"], "--query a,b: expected X,Y"),
        (["--fit", "stretch"], "--fit stretch: expected one of pad, crop"),
        (["--top-k", "0"], "--top-k 0: must be at least 1"),
        (["--pairs", "x.csv"], "give two images A B, or --pairs CSV"),
    ],
)
def test_bad_options_are_one_line(tmp_path, tiny_run, drr_pngs, args, message):
    result = _cli(drr_pngs["a"], drr_pngs["b"], "--run", tiny_run, "--out", tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_folder_without_a_run_is_named(tmp_path, drr_pngs):
    result = _cli(drr_pngs["a"], drr_pngs["b"], "--run", tmp_path, "--out", tmp_path / "o")
    assert result.exit_code == 2 and f"error: {tmp_path}: no checkpoint" in result.output
