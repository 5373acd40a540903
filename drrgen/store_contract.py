"""The store contract: what `drrgen build` writes and what every reader may rely on.

The one home of the format name and version, the arrays (names, shapes, dtypes, fill values,
chunks, shards, codecs), the pair order, the per-sample checksums, the block rules and the
error type. Imports numpy, zarr and google_crc32c only (no Numba, no torch), so the trainer
imports this module and nothing else of drrgen (``drrgen/__init__`` imports nothing eagerly).

S samples, V views, P = V (V - 1) / 2 pairs, H = W = size, N = (size / patch)^2 patches:

===========  ===================  ========  =======================================================
array        shape                dtype     content
===========  ===================  ========  =======================================================
views        (S, V, H, W)         float16   DRRs, line integrals of mu (dimensionless), `project`
corr         (S, P, N, N)         float16   `correspondence` matrices, pairs in `pairs_of` order
geometry     (S, V, 12)           float64   `View.as_vector()`: source, detector centre, u, v (mm)
pose         (S, V, 6)            float32   C-arm parameters, columns = attrs ``pose_fields``
crop         (S, 2, 3)            int32     voxel box [start, stop) in (i, j, k) of the CT
checksum     (S, 5)               int64     CRC32C per sample of views, corr, geometry, pose, crop
volume_id    (S,)                 int32     row of attrs ``volumes``; -1 = not written
===========  ===================  ========  =======================================================

* Chunks hold one sample, shards one block (``block`` samples); Blosc zstd then CRC32C per
  chunk (bit rot is detected on read). Float arrays are NaN-filled, ints -1-filled, so an
  unwritten sample is never mistaken for data.
* Volume v owns samples [v * samples_per_ct, (v + 1) * samples_per_ct); samples_per_ct is a
  multiple of block, so a block (= shard) never spans two volumes.
* A block is written by one task, whole shards at a time, in `ARRAY_NAMES` order, `volume_id`
  last: a block is done exactly when its `volume_id` entries equal its volume. Samples of
  failed volumes keep ``volume_id == -1`` and the volume is listed in attrs ``failed``.
* ``checksum[s, a]`` is the CRC32C of sample s of array `CHECKSUMMED`[a] as stored (C order,
  little-endian bytes); -1 (the fill value) is not a checksum. A written block whose data
  disagree with its checksums, or that has none, is damaged (a deleted or garbled shard reads
  as the fill value, a NaN written over data, a shard copied from elsewhere); readers check
  every block they load (`block_problems`).
* Format version 1 (before checksums) has no ``checksum`` array: its blocks can only be checked
  for the fill value (NaN or -1). `drrgen build` on a version-1 store records the checksums of
  its intact blocks and marks it version 2.
* Only the driver writes the group attributes: ``format``, ``format_version``,
  ``drrgen_version``, ``params`` (the `BuildConfig`), ``mu_water``, ``air_threshold_hu``, ``patch``,
  ``views``, ``size``, ``samples_per_ct``, ``block``, ``pairs``, ``pose_fields``,
  ``volumes`` (id, path relative to the CT folder, series_id, sha256, shape (i, j, k),
  spacing mm, affine (4, 4) voxel (i, j, k) -> LPS mm), ``failed`` (id, path, reason,
  blocks), ``complete`` (true only once every block is written), ``ct_dir``, ``created``,
  ``updated``.
* Metadata is not consolidated (experimental in Zarr v3, and it would go stale on resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

FORMAT = "drrgen.pairs"
FORMAT_VERSION = 2  # 2: per-sample checksums (the `checksum` array)
# Written in this order; `volume_id` last, it marks the block done.
ARRAY_NAMES = ("views", "corr", "geometry", "pose", "crop", "checksum", "volume_id")
# The columns of `checksum`.
CHECKSUMMED = ("views", "corr", "geometry", "pose", "crop")
NOT_RECORDED = -1  # the `checksum` fill value: no checksum (a damaged or unwritten block)


class StoreError(ValueError):
    """A store cannot be used as asked; the message names the store and the problem."""


def repair_command(url: str) -> str:
    """The command that rebuilds a store's damaged or missing blocks."""
    return f"drrgen verify {url} --repair"


def pairs_of(n_views: int) -> list[tuple[int, int]]:
    """The view pairs of ``corr`` axis 1: (0, 1), (0, 2), ..., (V - 2, V - 1)."""
    return [(i, j) for i in range(n_views) for j in range(i + 1, n_views)]


def array_names(version: int) -> tuple[str, ...]:
    """The arrays a store of format `version` holds, in write order."""
    return ARRAY_NAMES if version >= 2 else tuple(n for n in ARRAY_NAMES if n != "checksum")


def format_version(attrs: dict, url: str) -> int:
    """The store's format version, checked against what this code reads.

    Raises:
        StoreError: not a drrgen store, or a version other than 1..`FORMAT_VERSION` (named).
    """
    fmt = attrs.get("format")
    if fmt != FORMAT:
        raise StoreError(
            f"{url}: not a drrgen store (format attribute {fmt!r}, expected {FORMAT!r})"
        )
    version = attrs.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"{url}: bad format_version attribute {version!r} (expected an integer)")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{url}: store format version {version} is newer than this code reads "
            f"({FORMAT_VERSION}); upgrade xmatch"
        )
    return version


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

    def array_specs(self, version: int = FORMAT_VERSION) -> dict[str, dict]:
        """name -> dict(shape, dtype, fill_value, dimension_names) of a `version` store."""
        s, v, h, p, n = self.n_samples, self.views, self.size, self.n_pairs, self.n_patches
        specs = {
            "views": ((s, v, h, h), "float16", ("sample", "view", "row", "col")),
            "corr": ((s, p, n, n), "float16", ("sample", "pair", "patch_a", "patch_b")),
            "geometry": ((s, v, 12), "float64", ("sample", "view", "vector")),
            "pose": ((s, v, 6), "float32", ("sample", "view", "field")),
            "crop": ((s, 2, 3), "int32", ("sample", "start_stop", "ijk")),
            "checksum": ((s, len(CHECKSUMMED)), "int64", ("sample", "array")),
            "volume_id": ((s,), "int32", ("sample",)),
        }
        return {
            name: dict(shape=shape, dtype=dtype, fill_value=fill_value(dtype), dimension_names=dims)
            for name, (shape, dtype, dims) in specs.items()
            if name in array_names(version)
        }

    @classmethod
    def from_attrs(cls, attrs: dict, url: str = "store") -> Layout:
        """The layout recorded in a store's attributes (`StoreError` if one is missing)."""
        try:
            return cls(
                len(attrs["volumes"]),
                int(attrs["samples_per_ct"]),
                int(attrs["block"]),
                int(attrs["views"]),
                int(attrs["size"]),
                int(attrs["patch"]),
            )
        except KeyError as exc:
            raise StoreError(f"{url}: attribute {exc.args[0]!r} is missing") from exc


def fill_value(dtype) -> float | int:
    """The fill value of an array of `dtype`: NaN for floats, -1 for integers."""
    return np.nan if np.dtype(dtype).kind == "f" else -1


def create_arrays(group: zarr.Group, layout: Layout, clevel: int = 1, names=ARRAY_NAMES) -> None:
    """Create the arrays `names` (no data) in `group`: one sample per chunk, one block per shard.

    Args:
        group: the store's group, writable.
        layout: sizes of the arrays.
        clevel: Blosc zstd level (1: views 7 % larger than level 5, 3x faster to write).
        names: which arrays (default: all of the current format).
    """
    compressors = (BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle"), Crc32cCodec())
    for name, spec in layout.array_specs().items():
        if name not in names:
            continue
        shape = spec["shape"]
        group.create_array(
            name,
            chunks=(1, *shape[1:]),
            shards=(layout.block, *shape[1:]),
            compressors=compressors,
            **spec,
        )


def array_problems(group: zarr.Group, layout: Layout, version: int) -> list[str]:
    """Arrays missing or unlike the contract (shape, dtype, chunks, shards): one line each."""
    problems = []
    for name, spec in layout.array_specs(version).items():
        if name not in group:
            problems.append(f"array {name!r} is missing")
            continue
        arr = group[name]
        shape = tuple(spec["shape"])
        if tuple(arr.shape) != shape or str(arr.dtype) != spec["dtype"]:
            problems.append(
                f"array {name!r}: shape {arr.shape} {arr.dtype}, expected {shape} {spec['dtype']}"
            )
        elif tuple(arr.chunks) != (1, *shape[1:]) or tuple(arr.shards or ()) != (
            layout.block,
            *shape[1:],
        ):
            problems.append(
                f"array {name!r}: chunks {arr.chunks} shards {arr.shards}, expected one "
                f"sample per chunk and {layout.block} per shard"
            )
    return problems


def sample_checksums(values: np.ndarray) -> np.ndarray:
    """(B,) int64 CRC32C of each sample (leading axis) of `values`, C order, little-endian."""
    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return np.array([google_crc32c.value(sample) for sample in values], dtype=np.int64)


def checksum_rows(values: dict[str, np.ndarray]) -> np.ndarray:
    """(B, len(CHECKSUMMED)) int64 ``checksum`` entries of a block (name -> (B, ...) values)."""
    return np.stack([sample_checksums(values[name]) for name in CHECKSUMMED], axis=1)


def write_block(group: zarr.Group, layout: Layout, block: int, arrays: dict) -> None:
    """Write one block as whole shards in `ARRAY_NAMES` order: data, checksums, `volume_id`.

    Args:
        group: the store, opened writable (format `FORMAT_VERSION`).
        layout: its layout.
        block: global block index.
        arrays: name -> (block, ...) values for `CHECKSUMMED` and ``volume_id`` (cast to the
            store's dtypes before the checksums are taken).
    """
    specs = layout.array_specs()
    values = {name: np.asarray(arrays[name], dtype=specs[name]["dtype"]) for name in CHECKSUMMED}
    values["checksum"] = checksum_rows(values)
    values["volume_id"] = np.asarray(arrays["volume_id"], dtype=specs["volume_id"]["dtype"])
    sl = layout.block_samples(block)
    for name in ARRAY_NAMES:
        group[name][sl] = values[name]


def marked_blocks(volume_id: np.ndarray, layout: Layout) -> np.ndarray:
    """(n_blocks,) bool: True where the block's (S,) `volume_id` entries all equal its volume."""
    vid = np.asarray(volume_id).reshape(layout.n_blocks, layout.block)
    expected = np.arange(layout.n_blocks) // layout.blocks_per_volume
    return np.all(vid == expected[:, None], axis=1)


def written_blocks(group: zarr.Group, layout: Layout | None = None) -> np.ndarray:
    """(n_blocks,) bool: the blocks marked done by their `volume_id` (`marked_blocks`); the
    layout defaults to the one in the group's attributes.

    A block whose `volume_id` shard cannot be decoded counts as not written (Zarr reads a
    shard with a damaged index as the fill value, and raises ValueError for a chunk whose
    CRC32C does not match).
    """
    layout = layout or Layout.from_attrs(dict(group.attrs))
    arr = group["volume_id"]
    try:
        vid = np.asarray(arr[:])
    except ValueError:  # a damaged chunk: read block by block, the damaged ones stay -1
        vid = np.full(layout.n_samples, -1, np.int32)
        for b in range(layout.n_blocks):
            sl = layout.block_samples(b)
            try:
                vid[sl] = arr[sl]
            except ValueError:
                continue
    return marked_blocks(vid, layout)


def _fill_mask(values: np.ndarray) -> np.ndarray:
    """(B, n) bool: where each sample holds the fill value (NaN, or -1 for integers)."""
    flat = values.reshape(len(values), -1)
    return np.isnan(flat) if values.dtype.kind == "f" else flat == fill_value(values.dtype)


def block_problems(
    data: dict[str, np.ndarray], checksums: np.ndarray | None, start: int = 0
) -> list[str]:
    """What is wrong with one written block as read: one phrase per damaged array.

    With checksums (format 2) each sample is compared with its CRC32C (about 0.1 ms per MB);
    without (format 1) the block is only checked for the fill value (NaN, or -1 for integers).

    Args:
        data: name -> (B, ...) values of the block for any subset of `CHECKSUMMED`.
        checksums: (B, len(CHECKSUMMED)) int64 read from the ``checksum`` array, or None for a
            format 1 store.
        start: index of the block's first sample (for the messages).

    Returns:
        e.g. ``["views: missing or unreadable (reads as the fill value) in samples [4, 5]"]``;
        empty when the block is intact.
    """
    problems = []
    if checksums is not None:
        lost = np.flatnonzero((checksums == NOT_RECORDED).any(axis=1))
        if lost.size:
            problems.append(f"checksum: missing or unreadable in samples {(lost + start).tolist()}")
    for name, values in data.items():
        if checksums is None:
            bad = _fill_mask(values).any(axis=1)
        else:
            stored = checksums[:, CHECKSUMMED.index(name)]
            bad = (stored != NOT_RECORDED) & (sample_checksums(values) != stored)
        if not bad.any():
            continue
        fill = _fill_mask(values[bad])
        if fill.all():
            what = "missing or unreadable (reads as the fill value)"
        elif fill.any():
            what = "holds fill values (NaN or -1) where data was written"
        else:
            what = "checksum mismatch (data changed since it was written)"
        problems.append(f"{name}: {what} in samples {(np.flatnonzero(bad) + start).tolist()}")
    return problems


def undecodable(name: str, exc: Exception) -> str:
    """The `block_problems`-style phrase for an array whose block cannot be decoded."""
    return f"{name}: cannot be decoded, garbled shard ({str(exc).split('. ')[0]})"


def damaged_message(url: str, block: int, problems: list[str]) -> str:
    """One line naming the store, the block, its problems and the command that repairs it."""
    return (
        f"{url}: block {block} is damaged: "
        + "; ".join(problems)
        + f". Repair it with `{repair_command(url)}`"
    )


def upgrade_params(params: dict) -> dict:
    """A store's ``params`` with the keys renamed since it was written (``hu_air`` ->
    ``air_threshold_hu``), so that stores built before still resume and verify."""
    params = dict(params or {})
    if "hu_air" in params and "air_threshold_hu" not in params:
        params["air_threshold_hu"] = params.pop("hu_air")
    return params


def air_threshold(attrs: dict) -> float | None:
    """The air threshold (HU) a store's attributes record, under its current or former name."""
    return attrs.get("air_threshold_hu", attrs.get("hu_air"))
