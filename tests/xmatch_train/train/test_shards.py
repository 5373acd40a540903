"""Whole-shard reads equal Zarr's own slicing; corruption is detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from drrgen.store_contract import ARRAY_NAMES
from xmatch_train.data.shards import ShardReader


def assert_reads_equal(arr):
    reader = ShardReader(arr)
    assert reader.fast, arr.name
    size, block = arr.shape[0], arr.shards[0]
    for start in range(0, size, block):
        stop = min(start + block, size)
        got, want = reader.read(start, stop), arr[start:stop]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_drrgen_store_with_checksums(store, store3):
    for path in (store, store3):
        group = zarr.open_group(str(path), mode="r")
        for name in ARRAY_NAMES:
            assert_reads_equal(group[name])


def test_layout_without_crc32c_and_with_unwritten_shards(tmp_path):
    arr = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=(8, 3, 5),
        dtype="float16",
        chunks=(1, 3, 5),
        shards=(2, 3, 5),
        compressors=(BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),),
        fill_value=np.nan,
    )
    values = np.random.default_rng(0).random((8, 3, 5)).astype(np.float16)
    arr[0:2], arr[4:8] = values[0:2], values[4:8]  # shard 1 never written
    assert_reads_equal(arr)
    reader = ShardReader(arr)
    assert np.isnan(reader.read(2, 4)).all() and not np.isnan(reader.read(0, 2)).any()


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
