"""Whole-shard reads equal Zarr's own slicing; corruption is detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from xmatch_train.data.shards import ShardReader
from xmatch_train.testing import write_toy_store

ARRAYS = ("views", "corr", "geometry", "volume_id", "crop")


def assert_reads_equal(path):
    group = zarr.open_group(str(path), mode="r")
    for name in ARRAYS:
        arr = group[name]
        reader = ShardReader(arr)
        assert reader.fast, name
        size, block = arr.shape[0], arr.shards[0]
        for start in range(0, size, block):
            stop = min(start + block, size)
            got, want = reader.read(start, stop), arr[start:stop]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_drrgen_store_with_checksums(store, store3):
    assert_reads_equal(store)
    assert_reads_equal(store3)


def test_store_without_checksums_and_with_unwritten_shards(tmp_path):
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
    assert_reads_equal(path)
    views = ShardReader(zarr.open_group(str(path), mode="r")["views"])
    assert np.isnan(views.read(2, 4)).all() and not np.isnan(views.read(0, 2)).any()


def test_other_ranges_fall_back_to_zarr(store):
    arr = zarr.open_group(store, mode="r")["corr"]
    reader = ShardReader(arr)
    np.testing.assert_array_equal(reader.read(1, 3), arr[1:3])  # not a whole shard
    np.testing.assert_array_equal(reader.read(0, 8), arr[0:8])  # two shards


def test_a_flipped_byte_is_reported(store, tmp_path):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    shard = Path(copy) / "views" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    reader = ShardReader(zarr.open_group(str(copy), mode="r")["views"])
    with pytest.raises(ValueError, match="checksum mismatch"):
        reader.read(4, 8)
