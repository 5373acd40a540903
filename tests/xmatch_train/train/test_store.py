"""The store contract as the trainer reads it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from drrgen.store_contract import FORMAT_VERSION
from xmatch_train.data import StoreError, read_meta, sample_mask
from xmatch_train.testing import write_toy_store


def test_reads_a_drrgen_built_store(store):
    meta = read_meta(store)
    assert (meta.n_samples, meta.n_views, meta.image_shape, meta.grid) == (24, 2, (64, 64), (4, 4))
    assert meta.block == 4 and meta.complete
    assert meta.shard_ranges == [(s, s + 4) for s in range(0, 24, 4)]
    assert meta.pairs == [(0, 1)]
    assert sorted(set(meta.volume_id.tolist())) == [0, 1, 2]
    keys = {meta.volume_key(v) for v in range(3)}
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)  # sha256 hex digests


def test_three_views_give_three_pairs(store3):
    meta = read_meta(store3)
    assert meta.n_views == 3 and meta.pairs == [(0, 1), (0, 2), (1, 2)] and meta.grid == (4, 4)


def test_incomplete_store_is_refused_unless_allowed(tmp_path):
    path = write_toy_store(
        tmp_path / "s.zarr",
        n_volumes=2,
        samples_per_volume=4,
        size=32,
        patch=8,
        block=2,
        complete=False,
        unwritten_blocks=(1,),
    )
    with pytest.raises(StoreError, match="incomplete") as err:
        read_meta(str(path))
    assert str(path) in str(err.value)
    meta = read_meta(str(path), allow_incomplete=True)
    mask = sample_mask(meta, None)
    assert mask.tolist() == [True, True, False, False, True, True, True, True]
    assert np.isnan(zarr.open_group(str(path))["views"][2]).all()


def test_not_a_store_other_versions_and_missing_arrays_are_named(store, tmp_path):
    with pytest.raises(StoreError, match="nothing.zarr: no store here; build one"):
        read_meta(str(tmp_path / "nothing.zarr"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        read_meta(str(tmp_path / "empty"))
    zarr.open_group(str(tmp_path / "bad.zarr"), mode="w").attrs["complete"] = True
    with pytest.raises(StoreError, match=r"bad.zarr: not a drrgen store \(format attribute None"):
        read_meta(str(tmp_path / "bad.zarr"))
    copy = shutil.copytree(store, tmp_path / "copy.zarr")
    group = zarr.open_group(str(copy), mode="r+")
    group.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(StoreError, match=f"copy.zarr: store format version {FORMAT_VERSION + 1} "):
        read_meta(str(copy))
    group.attrs["format_version"] = FORMAT_VERSION
    shutil.rmtree(copy / "corr")
    with pytest.raises(StoreError, match="copy.zarr: array 'corr' is missing"):
        read_meta(str(copy))
