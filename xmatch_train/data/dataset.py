"""`PairStream`: an `IterableDataset` of view pairs streamed shard by shard from stores.

Each DataLoader worker opens the Zarr arrays itself, reads whole shards, one read per array
(`shards.ShardReader`, equal to ``views[start:stop]``; per-sample integer indexing of sharded
arrays is very slow), checks each block against the store's per-sample checksums (a damaged
block is a `StoreError`, never NaN in a batch), keeps
a few shards in memory and emits their items in the order of `plan.shuffle_order`. The plan is
deterministic (see `xmatch_train.data.plan`), so ``set_epoch(epoch, skip_batches)`` resumes a
run exactly where it stopped without reading the skipped batches.

Workers only move data (pair choice, flips and rotations with the matching permutation of C);
the per-pixel display transform and photometric augmentation run batch-wise on the training
device (`xmatch_train.data.batch.BatchTransform`), with per-view parameters drawn here.

An item (a dict; the DataLoader stacks them into batches; `BatchTransform` unpacks them):
    ``drr``: (2, H, W) float16 line integrals of view0 and view1 (after flips/rotations);
    ``photo``: (2, 3) float32 photometric parameters (contrast, brightness, invert) per view;
    ``corr_0to1``: (N, N) float16, entry [a, b] relates patch a of view0 to patch b of view1;
    ``info``: (5,) int64 (i, j, volume_id, store, sample): the store's view indices shown as
        view0 and view1, the CT id, the store number and the sample index;
    ``geometry``: (2, 12) float64 view vectors (mm) of the store's detector matching the
        (flipped) images (only with ``StreamOptions.geometry``);
    ``xray_seed``: (2,) int64 seed words of the realistic rendering per view (training only,
        drawn after every other draw, so they change nothing else; see `data.xray`).
Each item's randomness comes from ``default_rng([seed, epoch, store, sample, item])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import zarr
from numcodecs import blosc
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from drrgen.store_contract import StoreError, block_problems, damaged_message, undecodable
from xmatch_train.data.plan import Shard, WorkerPlan, epoch_plan, shuffle_order, worker_skips
from xmatch_train.data.shards import ShardReader
from xmatch_train.data.store import StoreMeta, open_group
from xmatch_train.data.transforms import (
    IDENTITY_PHOTOMETRIC,
    AugmentConfig,
    GridOp,
    draw_photometric,
    random_grid_op,
)
from xmatch_train.interrupts import InterruptSafeLoader


@dataclass(frozen=True)
class StreamOptions:
    """How a `PairStream` reads and transforms.

    Attributes:
        batch_size: per-rank batch size (quotas are whole batches).
        seed: seed of shard order, shuffle buffers and augmentations.
        train: random ordered pair per sample and augmentations; otherwise every pair (i < j)
            of every sample, no augmentation.
        mode: ``drop``, ``wrap`` or ``all`` (see `plan.epoch_plan`).
        buffer: shuffle-buffer size in items (<= 1: store order).
        shuffle: permute the shard order per epoch.
        augment: augmentation settings (used when `train`).
        geometry: also read and yield the view geometry (about 10% of the read time; the
            training loop does not need it).
        storage_options: fsspec options for remote stores.
    """

    batch_size: int = 8
    seed: int = 0
    train: bool = True
    mode: str = "drop"
    buffer: int = 256
    shuffle: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    geometry: bool = True
    storage_options: dict | None = None


def build_shards(metas: list[StoreMeta], masks: list[np.ndarray]) -> list[Shard]:
    """Every shard of every store, with the samples selected by the (S,) bool `masks`."""
    shards = []
    for store, (meta, mask) in enumerate(zip(metas, masks, strict=True)):
        for start, stop in meta.shard_ranges:
            chosen = tuple(int(i) for i in np.flatnonzero(mask[start:stop]) + start)
            shards.append(Shard(store, start, stop, chosen))
    return shards


class PairStream(IterableDataset):
    """View pairs with their correspondence matrix, streamed from one or more stores.

    Args:
        metas: the stores (from `store.read_meta`); all must share V, image shape and grid.
        masks: per store, (S,) bool samples to use (e.g. `splits.sample_mask`).
        options: `StreamOptions`.
        world_size, rank: DDP layout (rank r reads shards ``order[r::world_size]``).
        num_workers: DataLoader workers per rank (must match the loader's).
    """

    def __init__(
        self,
        metas: list[StoreMeta],
        masks: list[np.ndarray],
        options: StreamOptions,
        *,
        world_size: int = 1,
        rank: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        if not metas:
            raise ValueError("PairStream needs at least one store")
        first = metas[0]
        for meta in metas[1:]:
            if (meta.n_views, meta.image_shape, meta.grid) != (
                first.n_views,
                first.image_shape,
                first.grid,
            ):
                raise ValueError(
                    f"{meta.path}: views/images/grid {meta.n_views}, {meta.image_shape}, "
                    f"{meta.grid} differ from {first.path}'s"
                )
        self.metas = metas
        self.options = options
        self.shards = build_shards(metas, masks)
        self.world_size, self.rank, self.num_workers = world_size, rank, num_workers
        self.pairs = first.pairs
        self.items_per_sample = 1 if options.train else len(self.pairs)
        self.epoch, self.skip_batches = 0, 0
        self._arrays: list[dict] | None = None  # opened lazily, inside the worker
        self._ops: dict[GridOp, np.ndarray] = {}

    @property
    def n_samples(self) -> int:
        """Selected samples over all stores."""
        return sum(len(s.samples) for s in self.shards)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, cols); N = rows * cols."""
        return self.metas[0].grid

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch to iterate next, skipping its first `skip_batches` batches (resume)."""
        self.epoch, self.skip_batches = int(epoch), int(skip_batches)

    def plans(self, epoch: int | None = None) -> list[WorkerPlan]:
        """The worker plans of this rank for `epoch` (default: the current one)."""
        o = self.options
        return epoch_plan(
            self.shards,
            seed=o.seed,
            epoch=self.epoch if epoch is None else epoch,
            world_size=self.world_size,
            rank=self.rank,
            num_workers=self.num_workers,
            batch_size=o.batch_size,
            mode=o.mode,
            items_per_sample=self.items_per_sample,
            shuffle=o.shuffle,
        )

    def _batches(self, plan: WorkerPlan) -> int:
        return -(-plan.quota // self.options.batch_size)

    def batches_per_epoch(self, epoch: int | None = None) -> int:
        """Batches this rank yields in `epoch` (equal on every rank unless mode is ``all``)."""
        return sum(self._batches(p) for p in self.plans(epoch))

    # ---- inside the worker ------------------------------------------------------------
    def _open(self) -> list[dict]:
        if self._arrays is None:
            self._arrays = []
            for meta in self.metas:
                group = open_group(meta.path, self.options.storage_options)
                names = ("views", "corr") + (("geometry",) if self.options.geometry else ())
                if int(meta.attrs["format_version"]) >= 2:
                    names += ("checksum",)
                self._arrays.append({k: ShardReader(group[k]) for k in names})
        return self._arrays

    def _read(self, shard: Shard) -> dict[str, np.ndarray]:
        """One whole-shard read per array (see `shards.ShardReader`), checked against the
        store's per-sample checksums (format 1 stores: for NaN fill) before use.

        Raises:
            StoreError: the block is damaged (a shard deleted, garbled or overwritten): one
                line naming the store, the block, the arrays and the repair command.
        """
        meta = self.metas[shard.store]
        data, problems = {}, []
        for name, reader in self._open()[shard.store].items():
            try:
                data[name] = reader.read(shard.start, shard.stop)
            except ValueError as exc:  # a CRC32C mismatch: the shard is garbled
                problems.append(undecodable(name, exc))
        if not problems:
            problems = block_problems(data, data.pop("checksum", None), shard.start)
        if problems:
            raise StoreError(damaged_message(meta.path, shard.start // meta.block, problems))
        return data

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        n_workers = info.num_workers if info is not None else 1
        if n_workers != max(1, self.num_workers):
            raise RuntimeError(
                f"PairStream was built for {self.num_workers} workers but runs in {n_workers}"
            )
        plans = self.plans()
        skips, start = worker_skips([self._batches(p) for p in plans], self.skip_batches)
        # A resumed loader restarts its round-robin at worker 0: rotate the roles so that
        # the worker due next in the interrupted epoch goes first.
        role = (worker + start) % n_workers
        plan = plans[role]
        rng = np.random.default_rng([self.options.seed, self.epoch, self.rank, role, 7])
        order = shuffle_order(plan, rng, self.options.buffer, self.items_per_sample)
        order = order[skips[role] * self.options.batch_size :]
        remaining: dict[int, int] = {}
        for pos, _, _ in order:
            remaining[pos] = remaining.get(pos, 0) + 1
        cache: dict[int, dict[str, np.ndarray]] = {}
        for pos, sample, item in order:
            shard = plan.shards[pos]
            if pos not in cache:
                cache[pos] = self._read(shard)
            yield self._item(cache[pos], shard, sample, item)
            remaining[pos] -= 1
            if remaining[pos] == 0:
                del cache[pos]

    def _item(self, data: dict, shard: Shard, sample: int, item: int) -> dict:
        o = self.options
        local = sample - shard.start
        meta = self.metas[shard.store]
        rng = np.random.default_rng([o.seed, self.epoch, shard.store, sample, item])
        if o.train:
            i, j = (int(x) for x in rng.choice(meta.n_views, size=2, replace=False))
        else:
            i, j = self.pairs[item]
        corr = data["corr"][local, self.pairs.index((min(i, j), max(i, j)))]
        if i > j:
            corr = corr.T
        # Few, packed arrays: each array of a batch costs a shared-memory segment.
        drr = np.empty((2,) + meta.image_shape, dtype=data["views"].dtype)
        photo = np.empty((2, 3), dtype=np.float32)
        geom = np.empty((2, 12)) if o.geometry else None
        for k, view in enumerate((i, j)):
            img = data["views"][local, view]
            if o.geometry:
                geom[k] = data["geometry"][local, view]
            photo[k] = IDENTITY_PHOTOMETRIC
            if o.train:
                photo[k] = draw_photometric(rng, o.augment)
                op = random_grid_op(rng, o.augment, img.shape[0] == img.shape[1])
                if not op.identity:
                    img = op.apply(img)
                    if o.geometry:
                        geom[k] = op.geometry(geom[k], meta.image_shape)
                    perm = self._perm(op)
                    corr = corr[perm, :] if k == 0 else corr[:, perm]
            drr[k] = img
        out = {
            "drr": drr,
            "photo": photo,
            "corr_0to1": np.ascontiguousarray(corr),
            "info": np.array([i, j, meta.volume_id[sample], shard.store, sample], dtype=np.int64),
        }
        if o.geometry:
            out["geometry"] = geom
        if o.train:
            out["xray_seed"] = rng.integers(0, 2**62, size=2, dtype=np.int64)
        return out

    def _perm(self, op: GridOp) -> np.ndarray:
        if op not in self._ops:
            self._ops[op] = op.patch_permutation(self.grid)
        return self._ops[op]


def make_loader(stream: PairStream, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `stream` with its batch size and worker count (batches are full)."""
    workers = stream.num_workers
    return InterruptSafeLoader(
        stream,
        batch_size=stream.options.batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_worker_init if workers else None,
    )


def _worker_init(_: int) -> None:
    # Workers only decode and move bytes: torch intra-op threads and Blosc's own threads
    # would oversubscribe the cores. When Zarr decodes (layouts `ShardReader` does not
    # handle), it is fastest in one batch per shard on one thread.
    torch.set_num_threads(1)
    blosc.set_nthreads(1)
    info = get_worker_info()
    block = max(m.block for m in info.dataset.metas)
    zarr.config.set({"codec_pipeline.batch_size": block, "threading.max_workers": 1})
