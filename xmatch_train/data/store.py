"""Open a `drrgen build` store and describe it, checked against `drrgen.store_contract`.

The contract module (numpy and Zarr only; the trainer imports nothing else of drrgen) names
the arrays, their shapes and dtypes, the format version and the pair order; in short, for S
samples of V views of H x W pixels: ``views`` (S, V, H, W) float16 line integrals, ``corr``
(S, P, N, N) float16 in [0, 1] (one matrix per view pair (0, 1), (0, 2), ..., patches numbered
row-major on the (H / patch, W / patch) grid), ``geometry`` (S, V, 12) float64 views in mm,
``volume_id`` (S,) int32 and per-sample ``checksum``; one sample per chunk, one block per
shard. Group attributes carry the build ``params``, the ``volumes`` table and the ``complete``
flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from drrgen.store_contract import (
    Layout,
    StoreError,
    array_problems,
    damaged_message,
    format_version,
    marked_blocks,
    pairs_of,
    repair_command,
)


@dataclass(frozen=True)
class StoreMeta:
    """What a trainer needs to know about one store (read once, in the main process).

    Attributes:
        path: the store URL or path as given.
        n_samples: S.
        n_views: V.
        image_shape: (H, W) detector pixels.
        grid: (H / patch, W / patch) patch grid; N = grid[0] * grid[1].
        block: samples per shard (the unit of reading).
        volume_id: (S,) int32 CT id per sample (-1 where the sample was never written).
        volumes: the volume table, id -> dict(id, path, sha256, shape, spacing, ...).
        complete: the store's ``complete`` flag.
        attrs: all group attributes.
    """

    path: str
    n_samples: int
    n_views: int
    image_shape: tuple[int, int]
    grid: tuple[int, int]
    block: int
    volume_id: np.ndarray
    volumes: dict[int, dict[str, Any]] = field(default_factory=dict)
    complete: bool = True
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def corr_definition(self) -> str:
        """The ground-truth definition the store's ``corr`` was built with (``paper`` or
        ``peak``; stores written before the attribute existed are ``peak``)."""
        params = self.attrs.get("params") or {}
        return str(self.attrs.get("corr_definition", params.get("corr_definition", "peak")))

    @property
    def n_patches(self) -> int:
        """N, the patches per view."""
        return self.grid[0] * self.grid[1]

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The view pairs in ``corr`` order."""
        return pairs_of(self.n_views)

    @property
    def shard_ranges(self) -> list[tuple[int, int]]:
        """[start, stop) sample ranges of the shards, in store order."""
        return [
            (s, min(s + self.block, self.n_samples)) for s in range(0, self.n_samples, self.block)
        ]

    def volume_key(self, vid: int) -> str:
        """A store-independent identity of CT `vid`: its sha256 when recorded, else its path."""
        entry = self.volumes.get(int(vid), {})
        return str(entry.get("sha256") or entry.get("path") or f"{self.path}#{vid}")


def open_group(path: str, storage_options: dict | None = None) -> zarr.Group:
    """Open the store read-only; raise `StoreError` naming `path` if it is not a Zarr group."""
    if "://" not in str(path) and not Path(path).exists():
        raise StoreError(
            f"{path}: no store here; build one with `drrgen build --ct-dir CT_DIR --out {path}`"
        )
    try:
        return zarr.open_group(path, mode="r", storage_options=storage_options)
    except Exception as err:  # zarr raises several types for "not there" / "not a group"
        raise StoreError(
            f"{path}: cannot open as a Zarr group ({type(err).__name__}: {err})"
        ) from err


def _volume_table(attrs: dict) -> dict[int, dict[str, Any]]:
    table = attrs.get("volumes", [])
    if isinstance(table, dict):  # tolerate {id: {...}}
        table = [dict(v, id=int(k)) for k, v in table.items()]
    return {int(row["id"]): dict(row) for row in table if "id" in row}


def read_meta(
    path: str, *, allow_incomplete: bool = False, storage_options: dict | None = None
) -> StoreMeta:
    """Check a store against the contract and describe it.

    Args:
        path: store path or fsspec URL.
        allow_incomplete: accept a store whose ``complete`` flag is not set (a build still
            running or interrupted); unwritten samples (``volume_id`` < 0) are then skipped.
        storage_options: fsspec options for remote stores.

    Returns:
        The `StoreMeta`.

    Raises:
        StoreError: the store is missing, of another format or version, malformed or
            incomplete (naming the path and the reason).
    """
    group = open_group(path, storage_options)
    attrs = dict(group.attrs)
    version = format_version(attrs, path)
    complete = bool(attrs.get("complete", False))
    if not complete and not allow_incomplete:
        raise StoreError(
            f"{path}: store is incomplete (attribute complete={attrs.get('complete')!r}); "
            "finish it by rerunning `drrgen build` with the same arguments, or pass "
            "allow_incomplete (data.allow_incomplete=true) to train on the written samples"
        )
    layout = Layout.from_attrs(attrs, path)
    problems = array_problems(group, layout, version)
    if problems:
        raise StoreError(f"{path}: " + "; ".join(problems) + " (is this a `drrgen build` store?)")
    volume_id = _volume_ids(group, path)
    unmarked = np.flatnonzero(~marked_blocks(volume_id, layout))
    if complete and unmarked.size:  # a complete store has every block marked done
        problem = f"volume_id: missing or unreadable ({unmarked.size} block(s) unmarked)"
        raise StoreError(damaged_message(path, int(unmarked[0]), [problem]))
    grid = layout.size // layout.patch
    return StoreMeta(
        path=str(path),
        n_samples=layout.n_samples,
        n_views=layout.views,
        image_shape=(layout.size, layout.size),
        grid=(grid, grid),
        block=layout.block,
        volume_id=volume_id,
        volumes=_volume_table(attrs),
        complete=complete,
        attrs=attrs,
    )


def _volume_ids(group: zarr.Group, path: str) -> np.ndarray:
    """(S,) int64 ``volume_id``; `StoreError` naming the store when a shard cannot be read."""
    try:
        return np.asarray(group["volume_id"][:], dtype=np.int64)
    except ValueError as exc:  # Zarr: a chunk whose CRC32C does not match
        raise StoreError(
            f"{path}: array 'volume_id' cannot be read ({exc}); "
            f"repair it with `{repair_command(path)}`"
        ) from exc


def common_definition(metas: list[StoreMeta]) -> str:
    """The one ground-truth definition of `metas`; a run never mixes definitions.

    Raises:
        StoreError: the stores were built with different definitions (they are listed).
    """
    found = {m.path: m.corr_definition for m in metas}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{p}: {d}" for p, d in found.items())
        raise StoreError(
            f"the stores hold different correspondence definitions ({listed}); "
            "train and evaluate on stores of one definition (drrgen build corr_definition)"
        )
    return next(iter(found.values()))


def name_samples(paths: Sequence[str], stores: Iterable[int], samples: Iterable[int]) -> str:
    """The samples of a batch for messages: ``a.zarr samples 8, 9; b.zarr samples 3``.

    Args:
        paths: the stores, in the order of the store numbers.
        stores, samples: store number and sample index of each item.
    """
    by_store: dict[int, set[int]] = {}
    for store, sample in zip(stores, samples, strict=True):
        by_store.setdefault(int(store), set()).add(int(sample))
    return "; ".join(
        f"{paths[s] if 0 <= s < len(paths) else f'store {s}'} samples "
        + ", ".join(map(str, sorted(v)))
        for s, v in sorted(by_store.items())
    )


def damaged_samples(
    paths: Sequence[str], stores: Iterable[int], samples: Iterable[int], what: str
) -> StoreError:
    """The error for samples whose `what` (``views``, ``corr``) is not finite, naming them."""
    stores, samples = list(stores), list(samples)
    first = int(stores[0]) if stores else -1
    store = paths[first] if 0 <= first < len(paths) else "STORE"
    return StoreError(
        f"{name_samples(paths, stores, samples)}: non-finite {what} (a deleted or damaged "
        f"shard reads as NaN fill); check the store with `drrgen verify {store}`"
    )
