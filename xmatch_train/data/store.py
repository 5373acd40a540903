"""Open a `drrgen build` store and describe it (the contract of issue 3, section 3).

A store is a Zarr v3 group holding, for S samples of V views of H x W pixels:

* ``views`` (S, V, H, W) float16: DRR line integrals of mu (dimensionless), NaN = unwritten;
* ``corr`` (S, P, N, N) float16 in [0, 1]: one matrix per view pair (0, 1), (0, 2), ...,
  patches numbered row-major on the (H / patch, W / patch) grid;
* ``geometry`` (S, V, 12) float64: each view as (source, detector centre, u, v) in mm;
* ``volume_id`` (S,) int32 and ``crop`` (S, 2, 3) int32;

chunked one sample per chunk and sharded one block per shard. Group attributes carry the build
``params``, the ``volumes`` table and the ``complete`` flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

REQUIRED_ARRAYS = {"views": 4, "corr": 4, "geometry": 3, "volume_id": 1, "crop": 3}


class StoreError(ValueError):
    """A store that cannot be used for training; the message names the store and the problem."""


def pairs_of(n_views: int) -> list[tuple[int, int]]:
    """The view pairs of the ``corr`` axis 1: (0, 1), (0, 2), ..., (V - 2, V - 1)."""
    return [(i, j) for i in range(n_views) for j in range(i + 1, n_views)]


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


def _check_arrays(group: zarr.Group, path: str) -> dict[str, zarr.Array]:
    arrays = {}
    for name, ndim in REQUIRED_ARRAYS.items():
        if name not in group:
            raise StoreError(f"{path}: missing array '{name}' (is this a `drrgen build` store?)")
        arr = group[name]
        if arr.ndim != ndim:
            raise StoreError(f"{path}: array '{name}' has {arr.ndim} dims, expected {ndim}")
        arrays[name] = arr
    s, v, h, w = arrays["views"].shape
    s2, p, n, n2 = arrays["corr"].shape
    if s2 != s or arrays["volume_id"].shape[0] != s or arrays["geometry"].shape[:2] != (s, v):
        raise StoreError(f"{path}: arrays disagree on the sample/view counts")
    if p != v * (v - 1) // 2 or n != n2:
        raise StoreError(f"{path}: corr shape {arrays['corr'].shape} does not match V={v} views")
    return arrays


def _grid(attrs: dict, image_shape: tuple[int, int], n: int, path: str) -> tuple[int, int]:
    """Patch grid (rows, cols) from the recorded patch size, else from a square N."""
    h, w = image_shape
    patch = attrs.get("patch") or attrs.get("params", {}).get("patch")
    if patch:
        grid = (h // int(patch), w // int(patch))
    else:
        side = int(round(np.sqrt(n)))
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise StoreError(f"{path}: corr has {n} patches but images {image_shape} give grid {grid}")
    return grid


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
        StoreError: the store is missing, malformed or incomplete (naming the path and reason).
    """
    group = open_group(path, storage_options)
    attrs = dict(group.attrs)
    complete = bool(attrs.get("complete", False))
    if not complete and not allow_incomplete:
        raise StoreError(
            f"{path}: store is incomplete (attribute complete={attrs.get('complete')!r}); "
            "finish it by rerunning `drrgen build` with the same arguments, or pass "
            "allow_incomplete (data.allow_incomplete=true) to train on the written samples"
        )
    arrays = _check_arrays(group, path)
    s, v, h, w = arrays["views"].shape
    n = arrays["corr"].shape[-1]
    shards = getattr(arrays["views"], "shards", None)
    block = int(shards[0]) if shards else int(attrs.get("block") or arrays["views"].chunks[0])
    return StoreMeta(
        path=str(path),
        n_samples=s,
        n_views=v,
        image_shape=(h, w),
        grid=_grid(attrs, (h, w), n, path),
        block=block,
        volume_id=np.asarray(arrays["volume_id"][:], dtype=np.int64),
        volumes=_volume_table(attrs),
        complete=complete,
        attrs=attrs,
    )


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
