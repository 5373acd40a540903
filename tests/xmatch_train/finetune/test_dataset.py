"""Image loading, study items, epoch batches (ranks, resume)."""

from __future__ import annotations

import numpy as np
import pytest

from xmatch_train.data.transforms import AugmentConfig
from xmatch_train.finetune.dataset import EpochBatches, StudyDataset, load_image
from xmatch_train.finetune.studies import StudyDataError, read_mura

from .conftest import write_png


def test_load_image_modes_and_letterbox(tmp_path):
    gray = np.full((20, 40), 200, np.uint8)  # wide: padded above and below
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> luma 76
    deep = (np.arange(40 * 40).reshape(40, 40) * 30).astype(np.uint16)
    a = load_image(write_png(tmp_path / "g.png", gray), 40)
    assert a.shape == (40, 40) and a.dtype == np.float32
    np.testing.assert_allclose(a[10:30], 200 / 255, atol=1e-6)
    assert np.all(a[:9] == 0) and np.all(a[31:] == 0)
    b = load_image(write_png(tmp_path / "c.png", rgb), 20)
    np.testing.assert_allclose(b, 76 / 255, atol=2e-3)
    c = load_image(write_png(tmp_path / "d.png", deep, mode="I;16"), 40)
    assert c.min() == 0 and c.max() == 1 and np.all(np.diff(c.ravel()[:100]) >= 0)
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(StudyDataError, match="x.png: cannot read image"):
        load_image(tmp_path / "x.png", 8)
    from PIL import Image

    nan = np.ones((8, 8), np.float32)
    nan[2, 3] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")  # a float (mode F) TIFF with a NaN pixel
    with pytest.raises(StudyDataError, match="nan.tif: non-finite pixel values"):
        load_image(tmp_path / "nan.tif", 8)


def test_items_are_deterministic_per_epoch_and_fixed_at_evaluation(mura_tree):
    studies = read_mura(mura_tree)
    aug = AugmentConfig(brightness=0.1, contrast=0.2, invert=0.5)
    train = StudyDataset(studies, 32, train=True, augment=aug, seed=3)
    item = train[3]  # the 12-image wrist study
    assert item["view0"].shape == item["view1"].shape == (1, 32, 32)
    assert item["photo"].shape == (2, 3) and item["label"] == 0
    assert all(0 <= item[v].min() and item[v].max() <= 1 for v in ("view0", "view1"))
    again = train[3]
    np.testing.assert_array_equal(item["pair"], again["pair"])
    np.testing.assert_array_equal(item["photo"], again["photo"])
    pairs = set()
    for epoch in range(8):
        train.set_epoch(epoch)
        pairs.add(tuple(train[3]["pair"]))
    assert len(pairs) > 4  # a random pair per visit
    evaluation = StudyDataset(studies, 32, train=False)
    for epoch in range(3):
        evaluation.set_epoch(epoch)
        assert tuple(evaluation[3]["pair"]) == (0, 1)
        np.testing.assert_array_equal(evaluation[3]["photo"], [[1, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError, match="flips and rotations are not used"):
        StudyDataset(studies, 32, True, AugmentConfig(hflip=0.5))


def test_epoch_batches_ranks_and_resume():
    one = EpochBatches(23, 4, seed=1, epoch=2)
    batches = one.batches()
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert len({i for b in batches for i in b}) == 20  # whole batches, no repeats
    assert EpochBatches(23, 4, seed=1, epoch=2, skip=3).batches() == batches[3:]
    assert EpochBatches(23, 4, seed=1, epoch=3).batches() != batches
    ranks = [EpochBatches(23, 4, seed=1, epoch=2, world_size=2, rank=r).batches() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    flat = [i for r in ranks for b in r for i in b]
    assert len(flat) == len(set(flat)) == 16
    ordered = EpochBatches(10, 4, shuffle=False).batches()
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
