"""Points -> patch pairs through `xmatch match`'s preprocessing map, known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmatch_train.corr_finetune import AnnotatedPair, masked_loss, pair_entries, patch_centre
from xmatch_train.corr_finetune.entries import point_patch
from xmatch_train.match import Radiograph, prepare


def _frame(h, w, size=64, fit="pad"):
    pixels = np.random.default_rng(0).random((h, w)).astype(np.float32)
    return prepare(Radiograph(pixels, "x.png", "png"), size, fit=fit).frame


def test_square_image_maps_points_to_patches():
    frame = _frame(128, 128)  # 128 px -> 64 px, 16 x 16 patches of 8 original pixels
    grid = (16, 16)
    assert point_patch(frame, 0, 0, grid) == 0
    assert point_patch(frame, 7.4, 0, grid) == 0  # pixel 7: still the first patch
    assert point_patch(frame, 7.6, 0, grid) == 1  # pixel 8
    assert point_patch(frame, 127, 127, grid) == 255
    assert point_patch(frame, 20, 9, grid) == 1 * 16 + 2


def test_padded_image_keeps_its_offset():
    frame = _frame(64, 128)  # padded to 128 x 128: 32 rows of black above
    grid = (16, 16)
    assert point_patch(frame, 0, 0, grid) == 4 * 16  # row 0 of the image is model row 32 / 8
    assert point_patch(frame, 127, 63, grid) == 11 * 16 + 15


def test_cropped_fit_drops_unseen_points():
    frame0, frame1 = _frame(64, 128, fit="crop"), _frame(64, 64)  # crop keeps columns 32..95
    pair = AnnotatedPair("p", "a", "b", ((40, 10, 5, 5), (10, 10, 5, 5)), ((100, 0, 0, 0),))
    e = pair_entries(pair, frame0, frame1, (16, 16))
    assert len(e) == 1 and e.dropped == 2
    assert e.a.tolist() == [point_patch(frame0, 40, 10, (16, 16))] and e.label.tolist() == [1.0]


@pytest.mark.parametrize("patch", [0, 17, 255])
def test_patch_centres_map_back_to_their_patch(patch):
    x, y = patch_centre(patch, (16, 16), (128, 128))
    assert point_patch(_frame(128, 128), x, y, (16, 16)) == patch


def test_masked_loss_touches_only_annotated_entries():
    logits = torch.zeros(1, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4)
    mask = torch.zeros(1, 4, 4)
    target[0, 1, 2], mask[0, 1, 2], mask[0, 3, 0] = 1, 1, 1  # one positive, one negative
    with torch.no_grad():
        logits[0, 1, 2], logits[0, 3, 0] = 2.0, -1.0
    loss = masked_loss({"logits": logits, "corr": logits.sigmoid()}, target, mask, "bce")
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2  # BCE of both entries
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    touched = (logits.grad != 0).nonzero().tolist()
    assert touched == [[0, 1, 2], [0, 3, 0]]
    corr = torch.full((1, 4, 4), 0.5, requires_grad=True)
    mse = masked_loss({"corr": corr}, target, mask, "mse")
    assert mse.item() == pytest.approx(0.25)  # (0.5^2 + 0.5^2) / 2
    mse.backward()
    assert (corr.grad != 0).nonzero().tolist() == [[0, 1, 2], [0, 3, 0]]


def test_dense_target_keeps_positive_on_conflict():
    pair = AnnotatedPair("p", "a", "b", ((0, 0, 0, 0),), ((0, 0, 0, 0), (127, 0, 0, 0)))
    frame = _frame(128, 128)
    e = pair_entries(pair, frame, frame, (16, 16))
    target, mask = e.dense(256)
    assert target[0, 0] == 1 and mask[0, 0] == 1 and mask[15, 0] == 1 and mask.sum() == 2


def test_runs_are_seeds_of_one_row_only_when_they_differ_in_the_seed_alone():
    from dataclasses import replace
    from pathlib import Path

    from xmatch_train.config import PretrainConfig
    from xmatch_train.corr_finetune.evaluate import RunScore, _rows

    base = PretrainConfig()
    seed1 = replace(base, train=replace(base.train, seed=1))
    other = replace(base, optim=replace(base.optim, lr=1e-3))

    def score(name, cfg):
        return RunScore(Path(name), "zero-shot", cfg.train.seed, {}, float("nan"), {}, None,
                        [], cfg)  # fmt: skip

    rows = _rows([score("a", base), score("b", seed1), score("c", other)])
    assert [(label, len(g)) for label, g in rows] == [("zero-shot [a]", 2), ("zero-shot [c]", 1)]
    assert [(label, len(g)) for label, g in _rows([score("a", base), score("b", seed1)])] == [
        ("zero-shot", 2)
    ]
