"""The Zarr v3 store of DRR samples on the writer's side: locations, creation, opening.

The contract itself (arrays, format, block rules, checksums) lives in `drrgen.store_contract`,
shared with the readers.
"""

from __future__ import annotations

import zarr
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from drrgen.store_contract import (
    ARRAY_NAMES,
    FORMAT_VERSION,
    Layout,
    StoreError,
    array_names,
    create_arrays,
    format_version,
)


def make_store(url: str, storage_options: dict | None = None, read_only: bool = False):
    """A Zarr store for a local path or an fsspec URL (``s3://...``, ``file://...``)."""
    url = str(url)
    if "://" in url:
        options = dict(storage_options or {})
        if url.startswith("file://"):
            options.setdefault("auto_mkdir", True)  # local fsspec does not create folders
        try:
            return FsspecStore.from_url(url, storage_options=options, read_only=read_only)
        except ImportError as err:  # the protocol's fsspec backend (s3fs, gcsfs, ...) is absent
            raise StoreError(
                f"{url}: {url.split('://')[0]}:// needs its fsspec backend, which is not "
                f"installed ({err}); e.g. pip install s3fs for s3://"
            ) from err
    if storage_options:
        raise StoreError(f"{url}: storage options need an fsspec URL such as s3://bucket/x.zarr")
    return LocalStore(url, read_only=read_only)


def store_is_empty(url: str, storage_options: dict | None = None) -> bool:
    """True when nothing is stored at `url` (missing local folders count as empty)."""
    if "://" not in str(url):
        from pathlib import Path

        path = Path(url)
        if not path.exists():
            return True
        if not path.is_dir():
            return False
    return bool(sync(make_store(url, storage_options).is_empty("")))


def clear_store(url: str, storage_options: dict | None = None) -> None:
    """Delete everything at `url` (only call on a drrgen store or an empty location)."""
    sync(make_store(url, storage_options).clear())


def create_store(
    url: str, layout: Layout, attrs: dict, storage_options: dict | None = None, clevel: int = 1
) -> zarr.Group:
    """Create the group with its attributes, then its arrays (no data), at an empty location.

    Args:
        url: local path or fsspec URL.
        layout: sizes of the arrays.
        attrs: group attributes (the driver's).
        storage_options: fsspec options for URLs.
        clevel: Blosc zstd level (see `drrgen.store_contract.create_arrays`).
    """
    # Attributes first: a creation cut short is still recognised as ours (see `is_partial`).
    group = zarr.open_group(store=make_store(url, storage_options), mode="w-", attributes=attrs)
    create_arrays(group, layout, clevel)
    return group


def is_partial(group: zarr.Group) -> bool:
    """True when the store's creation was interrupted (arrays missing): it holds no data."""
    version = int(group.attrs.get("format_version", FORMAT_VERSION))
    return not all(name in group for name in array_names(version))


def open_store(url: str, mode: str = "r", storage_options: dict | None = None) -> zarr.Group:
    """Open an existing drrgen store.

    Raises:
        StoreError: nothing there, not a Zarr group, not written by `drrgen build`, or a
            format version this code does not read.
    """
    try:
        group = zarr.open_group(
            store=make_store(url, storage_options, read_only=mode == "r"),
            mode=mode,
            use_consolidated=False,
        )
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"{url}: no Zarr store here ({exc})") from exc
    format_version(dict(group.attrs), url)
    return group


def clear_block(group: zarr.Group, layout: Layout, block: int) -> None:
    """Delete one block's shard of every array, `volume_id` first: the block is then not
    written. (Zarr reads a shard back before rewriting it, so a garbled one must go first.)"""
    for name in ("volume_id", *ARRAY_NAMES[:-1]):
        if name not in group:
            continue
        arr = group[name]
        key = arr.metadata.encode_chunk_key((block,) + (0,) * (arr.ndim - 1))
        path = f"{arr.store_path.path}/{key}" if arr.store_path.path else key
        sync(arr.store_path.store.delete(path))
