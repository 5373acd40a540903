"""The Zarr v3 store of DRR samples: layout, creation, opening and block I/O.

Contract (kept stable for the trainer and for users), S samples, V views, P = V (V - 1) / 2
pairs, H = W = size, N = (size / patch)^2 patches:

===========  ===================  ========  =======================================================
array        shape                dtype     content
===========  ===================  ========  =======================================================
views        (S, V, H, W)         float16   DRRs, line integrals of mu (dimensionless), `project`
corr         (S, P, N, N)         float16   `correspondence` matrices, pairs (0,1), (0,2), ...
geometry     (S, V, 12)           float64   `View.as_vector()`: source, detector centre, u, v (mm)
pose         (S, V, 6)            float32   C-arm parameters, columns = attrs ``pose_fields``
crop         (S, 2, 3)            int32     voxel box [start, stop) in (i, j, k) of the CT
volume_id    (S,)                 int32     row of attrs ``volumes``; -1 = not written
===========  ===================  ========  =======================================================

* Chunks hold one sample, shards one block (``block`` samples); Blosc zstd then CRC32C per
  chunk (corruption is detected on read). Float arrays are NaN-filled, ints -1-filled, so an
  unwritten sample is never mistaken for data.
* Volume v owns samples [v * samples_per_ct, (v + 1) * samples_per_ct); samples_per_ct is a
  multiple of block, so a block (= shard) never spans two volumes.
* A block is written by one task, whole shards at a time, `volume_id` last: a block is done
  exactly when its `volume_id` entries equal its volume. Samples of failed volumes keep
  ``volume_id == -1`` (use it as the validity mask) and the volume is listed in attrs
  ``failed``.
* Only the driver writes the group attributes: ``format``, ``format_version``,
  ``drrgen_version``, ``params`` (the `BuildConfig`), ``mu_water``, ``hu_air``, ``patch``,
  ``views``, ``size``, ``samples_per_ct``, ``block``, ``pairs``, ``pose_fields``,
  ``volumes`` (id, path relative to the CT folder, series_id, sha256, shape (i, j, k),
  spacing mm, affine (4, 4) voxel (i, j, k) -> LPS mm), ``failed`` (id, path, reason,
  blocks), ``complete`` (true only once every block is written), ``ct_dir``, ``created``,
  ``updated``.
* Metadata is not consolidated (experimental in Zarr v3, and it would go stale on resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

FORMAT = "drrgen.pairs"
FORMAT_VERSION = 1
# Written in this order; `volume_id` last, it marks the block done.
ARRAY_NAMES = ("views", "corr", "geometry", "pose", "crop", "volume_id")


class StoreError(ValueError):
    """A store cannot be used as asked (not a drrgen store, other parameters, ...)."""


@dataclass(frozen=True)
class Layout:
    """Where everything sits in a store.

    Args:
        n_volumes: volumes in the table (failed ones included).
        samples_per_ct: samples per volume.
        block: samples per block (= shard).
        views: V, views per sample.
        size: H = W, detector pixels.
        patch: patch size in pixels.
    """

    n_volumes: int
    samples_per_ct: int
    block: int
    views: int
    size: int
    patch: int

    @property
    def n_samples(self) -> int:
        return self.n_volumes * self.samples_per_ct

    @property
    def n_blocks(self) -> int:
        return self.n_samples // self.block

    @property
    def blocks_per_volume(self) -> int:
        return self.samples_per_ct // self.block

    @property
    def n_pairs(self) -> int:
        return self.views * (self.views - 1) // 2

    @property
    def n_patches(self) -> int:
        return (self.size // self.patch) ** 2

    def block_samples(self, block: int) -> slice:
        """Sample slice of global block `block`."""
        return slice(block * self.block, (block + 1) * self.block)

    def block_volume(self, block: int) -> tuple[int, int]:
        """(volume id, block index within that volume) of global block `block`."""
        return divmod(block, self.blocks_per_volume)

    def volume_blocks(self, volume_id: int) -> range:
        """Global block indices of volume `volume_id`."""
        n = self.blocks_per_volume
        return range(volume_id * n, (volume_id + 1) * n)

    def array_specs(self) -> dict[str, dict]:
        """name -> dict(shape, dtype, fill_value, dimension_names); a chunk is one sample."""
        s, v, h, p, n = self.n_samples, self.views, self.size, self.n_pairs, self.n_patches
        return {
            "views": dict(
                shape=(s, v, h, h),
                dtype="float16",
                fill_value=np.nan,
                dimension_names=("sample", "view", "row", "col"),
            ),
            "corr": dict(
                shape=(s, p, n, n),
                dtype="float16",
                fill_value=np.nan,
                dimension_names=("sample", "pair", "patch_a", "patch_b"),
            ),
            "geometry": dict(
                shape=(s, v, 12),
                dtype="float64",
                fill_value=np.nan,
                dimension_names=("sample", "view", "vector"),
            ),
            "pose": dict(
                shape=(s, v, 6),
                dtype="float32",
                fill_value=np.nan,
                dimension_names=("sample", "view", "field"),
            ),
            "crop": dict(
                shape=(s, 2, 3),
                dtype="int32",
                fill_value=-1,
                dimension_names=("sample", "start_stop", "ijk"),
            ),
            "volume_id": dict(
                shape=(s,), dtype="int32", fill_value=-1, dimension_names=("sample",)
            ),
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> Layout:
        return cls(
            len(attrs["volumes"]),
            int(attrs["samples_per_ct"]),
            int(attrs["block"]),
            int(attrs["views"]),
            int(attrs["size"]),
            int(attrs["patch"]),
        )


def make_store(url: str, storage_options: dict | None = None, read_only: bool = False):
    """A Zarr store for a local path or an fsspec URL (``s3://...``, ``file://...``)."""
    url = str(url)
    if "://" in url:
        options = dict(storage_options or {})
        if url.startswith("file://"):
            options.setdefault("auto_mkdir", True)  # local fsspec does not create folders
        return FsspecStore.from_url(url, storage_options=options, read_only=read_only)
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
        clevel: Blosc zstd level (1: views 7 % larger than level 5, 3x faster to write).
    """
    # Attributes first: a creation cut short is still recognised as ours (see `is_partial`).
    group = zarr.open_group(store=make_store(url, storage_options), mode="w-", attributes=attrs)
    compressors = (BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle"), Crc32cCodec())
    for name, spec in layout.array_specs().items():
        shape = spec["shape"]
        chunks = (1, *shape[1:])
        group.create_array(
            name, chunks=chunks, shards=(layout.block, *shape[1:]), compressors=compressors, **spec
        )
    return group


def is_partial(group: zarr.Group) -> bool:
    """True when the store's creation was interrupted (arrays missing): it holds no data."""
    return not all(name in group for name in ARRAY_NAMES)


def open_store(url: str, mode: str = "r", storage_options: dict | None = None) -> zarr.Group:
    """Open an existing drrgen store.

    Raises:
        StoreError: nothing there, not a Zarr group, or not written by `drrgen build`.
    """
    try:
        group = zarr.open_group(
            store=make_store(url, storage_options, read_only=mode == "r"),
            mode=mode,
            use_consolidated=False,
        )
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreError(f"{url}: no Zarr store here ({exc})") from exc
    fmt = group.attrs.get("format")
    if fmt != FORMAT:
        raise StoreError(
            f"{url}: not a drrgen store (format attribute {fmt!r}, expected {FORMAT!r})"
        )
    if int(group.attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise StoreError(
            f"{url}: store format version {group.attrs['format_version']} is newer "
            f"than this drrgen ({FORMAT_VERSION}); upgrade drrgen"
        )
    return group


def written_blocks(group: zarr.Group, layout: Layout | None = None) -> np.ndarray:
    """(n_blocks,) bool: True where the block's `volume_id` entries all equal its volume."""
    layout = layout or Layout.from_attrs(dict(group.attrs))
    vid = np.asarray(group["volume_id"][:]).reshape(layout.n_blocks, layout.block)
    expected = np.arange(layout.n_blocks) // layout.blocks_per_volume
    return np.all(vid == expected[:, None], axis=1)


def write_block(group: zarr.Group, layout: Layout, block: int, arrays: dict) -> None:
    """Write one block's arrays as whole shards, `volume_id` last (the done marker).

    Args:
        group: the store, opened writable.
        layout: its layout.
        block: global block index.
        arrays: name -> (block, ...) array for every name of `ARRAY_NAMES`.
    """
    sl = layout.block_samples(block)
    for name in ARRAY_NAMES:
        group[name][sl] = arrays[name]
