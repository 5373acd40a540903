"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from xmatch_train.metrics import (
    CorrespondenceMetrics,
    MetricConfig,
    paired_auc_bootstrap,
    rank_auc,
)

PRED = np.array([[[0.9, 0.1], [0.3, 0.6]]])
TRUE = np.array([[[1.0, 0.0], [0.25, 0.1]]])


def test_hand_computed_example():
    m = CorrespondenceMetrics()
    m.update(PRED, TRUE)
    out = m.compute()
    # errors 0.1, 0.1, 0.05, 0.5
    assert out["mse"] == pytest.approx((0.01 + 0.01 + 0.0025 + 0.25) / 4)
    # C > 0.2: entries 0 and 2; C_hat > 0.2: entries 0, 2, 3 -> TP 2, FP 1, FN 0
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == 1.0
    # ranking 0.9 (+), 0.6 (-), 0.3 (+), 0.1 (-): AP = (1/1 + 2/3) / 2
    assert out["ap"] == pytest.approx((1 + 2 / 3) / 2)
    # at 0.5: positives {0}; predicted {0, 3}
    assert out["precision@0.5"] == 0.5 and out["recall@0.5"] == 1.0 and out["ap@0.5"] == 1.0
    assert out["positive_fraction"] == 0.5 and out["pairs"] == 1


def test_thresholds_are_configurable():
    m = CorrespondenceMetrics(
        MetricConfig(gt_threshold=0.05, pred_threshold=0.5, extra_thresholds=())
    )
    m.update(PRED, TRUE)
    out = m.compute()
    # C > 0.05: entries 0, 2, 3; C_hat > 0.5: entries 0, 3 -> TP 2, FP 0, FN 1
    assert out["precision"] == 1.0 and out["recall"] == pytest.approx(2 / 3)
    assert "precision@0.5" not in out


def test_batches_accumulate_like_one_batch_and_masks_select_entries():
    rng = np.random.default_rng(0)
    pred, true = rng.random((6, 5, 5)), rng.random((6, 5, 5)) ** 3
    whole, parts = CorrespondenceMetrics(), CorrespondenceMetrics()
    whole.update(pred, true)
    for k in range(0, 6, 2):
        parts.update(pred[k : k + 2], true[k : k + 2])
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a)
    assert a["ap"] == pytest.approx(average_precision_score(true.ravel() > 0.2, pred.ravel()))
    mask = rng.random((6, 5, 5)) > 0.5
    masked = CorrespondenceMetrics()
    masked.update(pred, true, mask)
    assert masked.compute()["mse"] == pytest.approx(np.mean((pred - true)[mask] ** 2))


def test_binned_average_precision_matches_the_exact_one():
    rng = np.random.default_rng(1)
    true = rng.random((40, 16, 16)) ** 4
    pred = np.clip(true + rng.normal(0, 0.15, true.shape), 0, 1)
    exact, binned = CorrespondenceMetrics(), CorrespondenceMetrics(MetricConfig(exact_limit=1000))
    for k in range(0, 40, 8):
        exact.update(pred[k : k + 8], true[k : k + 8])
        binned.update(pred[k : k + 8], true[k : k + 8])
    assert binned.hist is not None and exact.hist is None
    a, b = exact.compute(), binned.compute()
    assert abs(a["ap"] - b["ap"]) < 1e-3 and abs(a["ap@0.5"] - b["ap@0.5"]) < 1e-3
    assert a["precision"] == b["precision"] and a["mse"] == pytest.approx(b["mse"])


def test_undefined_values_are_nan():
    m = CorrespondenceMetrics()
    m.update(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    out = m.compute()
    assert math.isnan(out["precision"]) and math.isnan(out["recall"]) and math.isnan(out["ap"])
    assert out["mse"] == 0


def test_rank_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random((3, 200)) + 0.3 * labels, 1)  # many ties
    expected = [roc_auc_score(labels, s) for s in scores]
    np.testing.assert_allclose(rank_auc(labels, scores), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        rank_auc(np.ones(4), np.arange(4.0))


def test_paired_bootstrap_known_answers():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 150)
    noise = rng.random((2, 300))
    same = paired_auc_bootstrap(labels, noise, noise, n_boot=200)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0 and same["p_le_0"] == 1
    good = noise + 0.5 * labels  # clearly better than chance on every resample
    better = paired_auc_bootstrap(labels, good, noise, n_boot=300, seed=3)
    assert 0.2 < better["diff"] < 0.5 and better["low"] > 0.1 and better["p_le_0"] == 0
    assert better["low"] < better["diff"] < better["high"]
    worse = paired_auc_bootstrap(labels, noise, good, n_boot=300, seed=3)
    np.testing.assert_allclose(worse["diff"], -better["diff"])
    assert worse["high"] < 0 and worse["p_le_0"] == 1
