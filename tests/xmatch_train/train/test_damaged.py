"""A damaged block of a store stops training with one line naming the store, the block, the
array and the repair command, instead of feeding NaN to the loss (issue 15)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from drrgen.store_contract import FORMAT_VERSION
from xmatch_train.data import PairStream, StoreError, StreamOptions, read_meta, sample_mask
from xmatch_train.data.dataset import make_loader

BLOCK = 2  # of the `store` fixture: samples 8-11 of 24, blocks of 4


@pytest.fixture
def copy(store, tmp_path) -> Path:
    return Path(shutil.copytree(store, tmp_path / "s.zarr"))


def shard(path: Path, name: str, block: int) -> Path:
    ndim = zarr.open_array(str(path / name), mode="r").ndim
    return path.joinpath(name, "c", str(block), *["0"] * (ndim - 1))


def read_all(path: Path, workers: int = 0) -> int:
    """Stream every pair of every sample once; the number of pairs."""
    meta = read_meta(str(path))
    options = StreamOptions(batch_size=4, train=False, mode="all", shuffle=False)
    ds = PairStream([meta], [sample_mask(meta, None)], options, num_workers=workers)
    return sum(len(b["info"]) for b in make_loader(ds))


def nan_into_views(path: Path) -> None:
    group = zarr.open_group(str(path), mode="r+")
    views = group["views"][8:12]
    views[1, 0, 5, 5] = np.nan
    group["views"][8:12] = views  # a valid shard with the wrong values


DAMAGE = {
    "deleted shard": ("views", lambda p: shard(p, "views", BLOCK).unlink()),
    "garbage shard": (
        "corr",
        lambda p: shard(p, "corr", BLOCK).write_bytes(
            np.random.default_rng(1).bytes(shard(p, "corr", BLOCK).stat().st_size)
        ),
    ),
    "NaN written": ("views", nan_into_views),
    "shard of another block": (
        "corr",
        lambda p: shard(p, "corr", BLOCK).write_bytes(shard(p, "corr", 1).read_bytes()),
    ),
    "checksums deleted": ("checksum", lambda p: shard(p, "checksum", BLOCK).unlink()),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_each_damage_is_an_error_naming_store_block_array_and_repair(copy, damage):
    assert read_all(copy) == 24
    array, inflict = DAMAGE[damage]
    inflict(copy)
    with pytest.raises(StoreError) as err:
        read_all(copy)
    message = str(err.value)
    assert message.startswith(f"{copy}: block {BLOCK} is damaged: {array}: ")
    assert message.endswith(f"Repair it with `drrgen verify {copy} --repair`")
    assert "\n" not in message


def test_the_error_crosses_dataloader_workers(copy):
    shard(copy, "views", BLOCK).unlink()
    with pytest.raises(StoreError, match=f"block {BLOCK} is damaged: views: missing"):
        read_all(copy, workers=1)


def test_a_lost_volume_id_shard_of_a_complete_store_is_named(copy):
    shard(copy, "volume_id", BLOCK).unlink()
    with pytest.raises(StoreError, match=f"block {BLOCK} is damaged: volume_id: missing"):
        read_meta(str(copy))


def test_format_1_stores_without_checksums_are_checked_for_nan(copy):
    shutil.rmtree(copy / "checksum")
    zarr.open_group(str(copy), mode="r+").attrs["format_version"] = 1
    assert FORMAT_VERSION > 1 and read_all(copy) == 24
    nan_into_views(copy)
    with pytest.raises(StoreError, match="views: holds fill values .* in samples \\[9\\]"):
        read_all(copy)
