import numpy as np
import pytest
import zarr

from drrgen.build.inspect import verify_store
from drrgen.build.store import (
    ARRAY_NAMES,
    FORMAT,
    Layout,
    StoreError,
    create_store,
    open_store,
    write_block,
    written_blocks,
)

LAYOUT = Layout(n_volumes=3, samples_per_ct=4, block=2, views=3, size=16, patch=8)


def _attrs(layout: Layout) -> dict:
    return {
        "format": FORMAT,
        "format_version": 1,
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
    for name, spec in layout.array_specs().items():
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
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(group[name][6:8], data[name])
    group["volume_id"][6:8] = np.array([1, -1], np.int32)  # a half-written marker
    assert not written_blocks(group).any()


def test_open_refuses_other_things(tmp_path):
    with pytest.raises(StoreError, match="no Zarr store"):
        open_store(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "other.zarr", mode="w").attrs["format"] = "something"
    with pytest.raises(StoreError, match="not a drrgen store"):
        open_store(tmp_path / "other.zarr")


def test_verify_finds_missing_blocks_nan_and_corruption(tmp_path):
    url = tmp_path / "s.zarr"
    group = create_store(url, LAYOUT, _attrs(LAYOUT))
    for b in range(LAYOUT.n_blocks):
        write_block(group, LAYOUT, b, _block(LAYOUT, b))
    group.attrs["complete"] = True
    assert verify_store(str(url)).ok
    assert verify_store(str(url)).checked_blocks == 6

    views = group["views"][0:2]
    views[1, 0, 3, 3] = np.nan
    group["views"][0:2] = views
    report = verify_store(str(url))
    assert not report.ok and any("block 0: views: 1 non-finite" in p for p in report.problems)

    shard = url / "corr" / "c" / "1" / "0" / "0" / "0"  # the shard of block 1
    raw = bytearray(shard.read_bytes())
    raw[40] ^= 0xFF  # flip a bit in the first compressed chunk of block 1
    shard.write_bytes(bytes(raw))
    report = verify_store(str(url))
    assert any(p.startswith("block 1: cannot be read") for p in report.problems)

    group["volume_id"][10:12] = -1
    report = verify_store(str(url), quick=True)
    assert report.missing_blocks == [5] and not report.ok
    assert any("complete=True" in p for p in report.problems)
