"""Paired comparisons of Table-3 rows (`xmatch_train.finetune.report`)."""

from __future__ import annotations

import numpy as np

from xmatch_train.finetune.report import ROW_KEYS, comparisons_markdown, paired_comparisons


def _runs(ids, labels, probs):
    return [list(zip(ids, labels, p, strict=True)) for p in probs]


def test_paired_comparison_of_a_better_row_and_skips():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    good = [np.array(labels) + 0.3 * rng.random(40) for _ in range(2)]  # AUC 1
    noise = [rng.random(40) for _ in range(2)]
    predictions = {
        ROW_KEYS["early_pretrain"]: _runs(ids, labels, good),
        ROW_KEYS["early"]: _runs(ids, labels, noise),
        # scored on other studies: cannot be paired with `early`, skipped (no error)
        ROW_KEYS["single"]: _runs([f"t{i}" for i in range(40)], labels, noise),
    }
    out = paired_comparisons(predictions, n_boot=200)
    assert [(c["a"], c["b"]) for c in out] == [("early_pretrain", "early")]
    assert out[0]["diff"] > 0.2 and out[0]["low"] > 0 and out[0]["p_le_0"] == 0
    text = comparisons_markdown(out, {"run/seed0": [0.5, 1.0]}, split="val")
    assert "same val studies" in text and "| early_pretrain - early | +" in text
    assert "* run/seed0: 0.500, 1.000" in text
