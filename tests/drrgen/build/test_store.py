import re

import google_crc32c
import numpy as np
import pytest
import zarr

from drrgen.build.inspect import verify_store
from drrgen.build.store import create_store, open_store
from drrgen.store_contract import (
    CHECKSUMMED,
    FORMAT,
    FORMAT_VERSION,
    Layout,
    StoreError,
    write_block,
    written_blocks,
)

LAYOUT = Layout(n_volumes=3, samples_per_ct=4, block=2, views=3, size=16, patch=8)


def _attrs(layout: Layout) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "views": layout.views,
        "size": layout.size,
        "patch": layout.patch,
        "samples_per_ct": layout.samples_per_ct,
        "block": layout.block,
        "volumes": [{"id": i, "path": f"v{i}", "shape": [9, 9, 9]} for i in range(3)],
        "failed": [],
        "complete": False,
        "params": {},
    }


def _block(layout: Layout, block: int) -> dict:
    vid, _ = layout.block_volume(block)
    rng = np.random.default_rng(block)
    out = {}
    for name in CHECKSUMMED:
        spec = layout.array_specs()[name]
        shape = (layout.block, *spec["shape"][1:])
        out[name] = rng.random(shape).astype(spec["dtype"])
    out["crop"] = np.tile(np.array([[0, 0, 0], [5, 5, 5]], np.int32), (layout.block, 1, 1))
    out["volume_id"] = np.full(layout.block, vid, np.int32)
    return out


def test_layout_is_volume_major_and_block_aligned():
    assert (LAYOUT.n_samples, LAYOUT.n_blocks, LAYOUT.n_pairs, LAYOUT.n_patches) == (12, 6, 3, 4)
    assert LAYOUT.block_samples(3) == slice(6, 8)
    assert LAYOUT.block_volume(3) == (1, 1)
    assert list(LAYOUT.volume_blocks(2)) == [4, 5]


def test_contract_chunks_shards_codecs_fill(tmp_path):
    group = create_store(tmp_path / "s.zarr", LAYOUT, _attrs(LAYOUT))
    specs = {
        "views": ((12, 3, 16, 16), "float16"),
        "corr": ((12, 3, 4, 4), "float16"),
        "geometry": ((12, 3, 12), "float64"),
        "pose": ((12, 3, 6), "float32"),
        "crop": ((12, 2, 3), "int32"),
        "checksum": ((12, 5), "int64"),
        "volume_id": ((12,), "int32"),
    }
    for name, (shape, dtype) in specs.items():
        arr = group[name]
        assert arr.shape == shape and str(arr.dtype) == dtype
        assert arr.chunks == (1, *shape[1:]) and arr.shards == (2, *shape[1:])
        codecs = arr.metadata.codecs[0].codecs  # inside the sharding codec
        names = [type(c).__name__ for c in codecs]
        assert names[-2:] == ["BloscCodec", "Crc32cCodec"] and codecs[-2].cname.value == "zstd"
        fill = arr.metadata.fill_value
        assert np.isnan(fill) if dtype.startswith("float") else fill == -1
    assert not written_blocks(group).any()
    assert np.isnan(group["views"][5]).all()


def test_blocks_are_marked_done_by_their_volume_id(tmp_path):
    group = create_store(tmp_path / "s.zarr", LAYOUT, _attrs(LAYOUT))
    data = _block(LAYOUT, 3)
    write_block(group, LAYOUT, 3, data)
    assert written_blocks(group).tolist() == [False, False, False, True, False, False]
    for name in (*CHECKSUMMED, "volume_id"):
        np.testing.assert_array_equal(group[name][6:8], data[name])
    want = [[google_crc32c.value(data[n][i].tobytes()) for n in CHECKSUMMED] for i in range(2)]
    np.testing.assert_array_equal(group["checksum"][6:8], want)  # CRC32C of each sample
    group["volume_id"][6:8] = np.array([1, -1], np.int32)  # a half-written marker
    assert not written_blocks(group).any()


def test_open_refuses_other_things(tmp_path):
    with pytest.raises(StoreError, match="no Zarr store"):
        open_store(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w").attrs["format"] = "something"
    with pytest.raises(StoreError, match="not a drrgen store"):
        open_store(tmp_path / "other.zarr")
    newer = zarr.open_group(tmp_path / "newer.zarr", mode="w")
    newer.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION + 1})
    with pytest.raises(StoreError, match=f"newer.zarr: store format version {FORMAT_VERSION + 1} "):
        open_store(tmp_path / "newer.zarr")


def _shard(url, name: str, block: int):
    """The shard file of `block` of array `name` (one block per shard along samples)."""
    ndim = len(LAYOUT.array_specs()[name]["shape"])
    return url.joinpath(name, "c", str(block), *["0"] * (ndim - 1))


def test_verify_names_each_damaged_block_in_one_line(tmp_path):
    url = tmp_path / "s.zarr"
    group = create_store(url, LAYOUT, _attrs(LAYOUT))
    for b in range(LAYOUT.n_blocks):
        write_block(group, LAYOUT, b, _block(LAYOUT, b))
    group.attrs["complete"] = True
    assert verify_store(str(url)).ok
    assert verify_store(str(url)).checked_blocks == 6

    views = group["views"][0:2]
    views[1, 0, 3, 3] = np.nan  # NaN written over data, through Zarr (valid shard)
    group["views"][0:2] = views
    raw = bytearray(_shard(url, "corr", 1).read_bytes())
    raw[40] ^= 0xFF  # flip a bit in the first compressed chunk of block 1
    _shard(url, "corr", 1).write_bytes(bytes(raw))
    _shard(url, "views", 2).unlink()  # a deleted shard reads as NaN fill
    size = _shard(url, "geometry", 3).stat().st_size
    _shard(url, "geometry", 3).write_bytes(np.random.default_rng(0).bytes(size))  # garbage
    _shard(url, "pose", 5).write_bytes(_shard(url, "pose", 4).read_bytes())  # valid, wrong

    report = verify_store(str(url))
    assert not report.ok and report.damaged_blocks == [0, 1, 2, 3, 5]
    lines = {int(p.split()[1]): p for p in report.problems}
    assert sorted(lines) == [0, 1, 2, 3, 5] and len(report.problems) == 5
    assert "views: holds fill values (NaN or -1) where data was written in samples [1]" in lines[0]
    assert "corr: cannot be decoded, garbled shard (Stored and computed checksum" in lines[1]
    assert "views: missing or unreadable (reads as the fill value) in samples [4, 5]" in lines[2]
    assert re.search(r"geometry: (cannot be decoded|missing or unreadable)", lines[3])
    assert "pose: checksum mismatch (data changed since it was written) in samples" in lines[5]
    assert f"repair: drrgen verify {url} --repair" in report.format()

    group["volume_id"][10:12] = -1
    report = verify_store(str(url), quick=True)
    assert report.missing_blocks == [5] and not report.ok
    assert any("complete=True" in p for p in report.problems)
