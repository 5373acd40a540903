"""`PairStream` over real stores: coverage, resume, pairs, transforms, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from xmatch_train.data import (
    AugmentConfig,
    BatchTransform,
    DisplayConfig,
    PairStream,
    StreamOptions,
    load_split,
    make_loader,
    read_meta,
    sample_mask,
    save_split,
    split_volumes,
    to_display,
)
from xmatch_train.data.transforms import downsample, photometric


def stream(path, *, keys=None, world=1, rank=0, workers=0, **kw):
    meta = read_meta(path)
    return PairStream(
        [meta],
        [sample_mask(meta, keys)],
        StreamOptions(**kw),
        world_size=world,
        rank=rank,
        num_workers=workers,
    )


def indices(ds):
    return [int(i) for b in make_loader(ds) for i in b["info"][:, 4]]


def test_two_ranks_two_workers_read_every_sample_exactly_once(store):
    got = {}
    for rank in range(2):
        ds = stream(store, world=2, rank=rank, workers=2, batch_size=2, buffer=6)
        ds.set_epoch(1)
        got[rank] = indices(ds)
        assert len(got[rank]) == ds.batches_per_epoch() * 2
    assert len(got[0]) == len(got[1])
    assert sorted(got[0] + got[1]) == list(range(24))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers,skip", [(2, 5), (4, 9)])  # 4 workers: uneven quotas 4,4,2,2
def test_resume_skips_exactly_the_consumed_batches(store, workers, skip):
    aug = AugmentConfig(brightness=0.1, contrast=0.2, invert=0.5, hflip=0.5, rot90=0.5)
    ds = stream(store, workers=workers, batch_size=2, buffer=6, augment=aug)
    ds.set_epoch(2)
    full = list(make_loader(ds))
    assert len(full) == 12
    ds.set_epoch(2, skip_batches=skip)
    tail = list(make_loader(ds))
    assert len(tail) == 12 - skip
    for a, b in zip(full[skip:], tail, strict=True):
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_one_read_per_shard(store, monkeypatch):
    reads = []
    original = PairStream._read

    def counting(self, shard):
        reads.append((shard.start, shard.stop))
        return original(self, shard)

    monkeypatch.setattr(PairStream, "_read", counting)
    ds = stream(store, batch_size=4, buffer=8)
    assert len(indices(ds)) == 24
    assert sorted(reads) == [(s, s + 4) for s in range(0, 24, 4)]


def test_evaluation_yields_every_pair_with_the_stored_matrix(store3):
    group = zarr.open_group(store3, mode="r")
    corr, views = group["corr"][:], group["views"][:]
    ds = stream(store3, batch_size=3, train=False, mode="all", shuffle=False, buffer=0)
    seen = []
    for raw in make_loader(ds):
        batch = BatchTransform()(raw)
        assert batch["view0"].dtype == torch.float32 and batch["corr_0to1"].dtype == torch.float32
        for b in range(len(batch["index"])):
            s, (i, j) = int(batch["index"][b]), batch["pair"][b].tolist()
            p = [(0, 1), (0, 2), (1, 2)].index((i, j))
            np.testing.assert_array_equal(raw["corr_0to1"][b].numpy(), corr[s, p])
            np.testing.assert_array_equal(raw["drr"][b, 1].numpy(), views[s, j])
            np.testing.assert_allclose(
                batch["view0"][b, 0].numpy(), to_display(views[s, i]), atol=1e-5
            )
            np.testing.assert_array_equal(batch["geometry1"][b].numpy(), group["geometry"][s, j])
            seen.append((s, i, j))
    assert sorted(seen) == [(s, i, j) for s in range(8) for i, j in [(0, 1), (0, 2), (1, 2)]]


def test_training_pairs_are_ordered_at_random_and_transposed(store3):
    corr = zarr.open_group(store3, mode="r")["corr"][:]
    ds = stream(store3, batch_size=2, buffer=4)
    orders = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for batch in make_loader(ds):
            for b in range(len(batch["info"])):
                (i, j), s = batch["info"][b, :2].tolist(), int(batch["info"][b, 4])
                c = corr[s, [(0, 1), (0, 2), (1, 2)].index((min(i, j), max(i, j)))]
                expect = c.T if i > j else c
                np.testing.assert_array_equal(
                    batch["corr_0to1"][b].numpy(), expect.astype(np.float32)
                )
                orders.add(i > j)
    assert orders == {True, False}


def test_batch_transform_windows_augments_and_downsamples(store):
    ds = stream(store, batch_size=4, augment=AugmentConfig(contrast=0.5, invert=0.5))
    raw = next(iter(make_loader(ds)))
    assert raw["drr"].dtype == torch.float16 and raw["photo"].shape == (4, 2, 3)
    batch = BatchTransform(DisplayConfig(mode="absorbed"), image_size=32)(raw)
    assert batch["view0"].shape == (4, 1, 32, 32) and batch["corr_0to1"].shape == (4, 16, 16)
    for b in range(4):
        ref = to_display(raw["drr"][b, 0].numpy(), DisplayConfig(mode="absorbed"))
        ref = photometric(downsample(ref, 2), raw["photo"][b, 0].numpy())
        np.testing.assert_allclose(batch["view0"][b, 0].numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="image_size"):
        BatchTransform(image_size=48)(raw)


def test_split_is_by_volume_and_round_trips(store, tmp_path):
    meta = read_meta(store)
    keys = [meta.volume_key(v) for v in range(3)]
    split = split_volumes(keys, val=0.3, test=0.3, seed=1)
    assert len(split.train) == len(split.val) == len(split.test) == 1
    assert not (set(split.train) & set(split.val) | set(split.train) & set(split.test))
    for name in ("train", "val", "test"):
        vids = set(meta.volume_id[sample_mask(meta, split.keys(name))].tolist())
        assert len(vids) == 1  # all samples of one CT, never split across sets
    save_split(tmp_path / "split.json", [meta], split)
    assert load_split(tmp_path / "split.json") == split
    assert split_volumes(keys, 0.3, 0.3, seed=1) == split
