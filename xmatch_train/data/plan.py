"""Which samples each DDP rank and DataLoader worker reads in an epoch, in which order.

Everything here is a pure function of (seed, epoch, shard list, world size, rank, workers,
batch size): every process computes the same plan without communicating, and a resumed run can
skip exactly the batches it already consumed without reading them.

Rules:
    * the shard (one block of samples) is the unit of reading;
    * shard order is permuted per epoch from (seed, epoch);
    * shards are dealt to DDP ranks first (``order[rank::world]``) and to the DataLoader workers
      of a rank second (``rank_shards[worker::workers]``);
    * every rank yields the same number of full batches: ``drop`` trims all ranks to the
      smallest, ``wrap`` tops up the smaller ranks by cycling their own shards; ``all`` keeps
      every sample (a single process, e.g. evaluation; the last batch may be short);
    * a worker's samples pass through an in-memory shuffle buffer of ``buffer`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("drop", "wrap", "all")


@dataclass(frozen=True)
class Shard:
    """One block of one store.

    Attributes:
        store: index of the store in the dataset's store list.
        start, stop: the block's sample range [start, stop) in the store.
        samples: absolute indices of the selected samples (those of the split) in the block.
    """

    store: int
    start: int
    stop: int
    samples: tuple[int, ...]


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker of one rank does in one epoch.

    Attributes:
        shards: the worker's shards in reading order (repeated when ``wrap`` cycles them).
        quota: samples to yield (a multiple of the batch size except in mode ``all``).
    """

    shards: tuple[Shard, ...]
    quota: int


def _deal(items: list, parts: int, index: int) -> list:
    return items[index::parts]


def _spread(avail: list[int], total: int, cyclic: list[bool]) -> list[int]:
    """Hand out `total` batches one at a time, round-robin, to workers with room left.

    Workers first get batches they have samples for; if more are needed (mode ``wrap``),
    workers marked `cyclic` get extra ones.
    """
    quota = [0] * len(avail)
    left = total
    while left > 0:
        progressed = False
        for w in range(len(avail)):
            if left and quota[w] < avail[w]:
                quota[w] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    while left > 0:
        if not any(cyclic):
            raise ValueError("no shards to wrap around")
        for w in range(len(avail)):
            if left and cyclic[w]:
                quota[w] += 1
                left -= 1
    return quota


def epoch_plan(
    shards: list[Shard],
    *,
    seed: int,
    epoch: int,
    world_size: int = 1,
    rank: int = 0,
    num_workers: int = 1,
    batch_size: int = 1,
    mode: str = "drop",
    items_per_sample: int = 1,
    shuffle: bool = True,
) -> list[WorkerPlan]:
    """The plans of the `num_workers` workers of `rank` for `epoch`.

    Args:
        shards: all shards of the split (shards with no selected sample are ignored).
        seed, epoch: the permutation of the shard order is drawn from ``(seed, epoch)``.
        world_size, rank: DDP layout.
        num_workers: DataLoader workers per rank (0 counts as 1: the main process).
        batch_size: per-rank batch size; quotas are whole batches except in mode ``all``.
        mode: ``drop``, ``wrap`` or ``all`` (see the module docstring).
        items_per_sample: items yielded per selected sample (view pairs in evaluation).
        shuffle: permute the shard order (False keeps store order, e.g. for evaluation).

    Returns:
        One `WorkerPlan` per worker.

    Raises:
        ValueError: unknown mode, or no rank could get a single batch.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if mode == "all" and world_size != 1:
        raise ValueError("mode 'all' keeps uneven ranks; use 'drop' or 'wrap' with DDP")
    workers = max(1, num_workers)
    used = [s for s in shards if s.samples]
    order = (
        np.random.default_rng([seed, epoch]).permutation(len(used)) if shuffle else range(len(used))
    )
    ordered = [used[i] for i in order]

    def items(ss: list[Shard]) -> int:
        return sum(len(s.samples) for s in ss) * items_per_sample

    layout = [
        [_deal(_deal(ordered, world_size, r), workers, w) for w in range(workers)]
        for r in range(world_size)
    ]
    mine = layout[rank]
    if mode == "all":
        return [WorkerPlan(tuple(ss), items(ss)) for ss in mine]
    avail = [[items(ss) // batch_size for ss in rank_layout] for rank_layout in layout]
    totals = [sum(a) for a in avail]
    target = min(totals) if mode == "drop" else max(totals)
    if target == 0:
        raise ValueError(
            f"an epoch gives {totals} full batches of {batch_size} per rank over {world_size} "
            f"rank(s) from {len(used)} shard(s): too few samples for this batch size and layout"
        )
    quota = _spread(avail[rank], target, [bool(ss) for ss in mine])
    plans = []
    for ss, q in zip(mine, quota, strict=True):
        n_items = q * batch_size
        cycled = list(ss)
        while items(cycled) < n_items:  # wrap: cycle the worker's own shards
            cycled += ss
        plans.append(WorkerPlan(tuple(cycled), n_items))
    return plans


def shuffle_order(
    plan: WorkerPlan, rng: np.random.Generator, buffer: int, items_per_sample: int = 1
) -> list[tuple[int, int, int]]:
    """The emission order of a worker: shards enter a buffer whole, items leave at random.

    Args:
        plan: the worker's plan.
        rng: the worker's generator (seeded from seed, epoch, rank, worker).
        buffer: shuffle-buffer size in items (<= 1: no shuffling, store order).
        items_per_sample: items per sample (they are numbered 0..items_per_sample-1).

    Returns:
        ``plan.quota`` tuples (position of the shard in ``plan.shards``, absolute sample index,
        item number) in emission order.
    """
    out: list[tuple[int, int, int]] = []
    pool: list[tuple[int, int, int]] = []
    for pos, shard in enumerate(plan.shards):
        if len(out) >= plan.quota:
            break
        pool.extend((pos, s, k) for s in shard.samples for k in range(items_per_sample))
        while len(pool) >= max(buffer, 1) and len(out) < plan.quota:
            if buffer > 1:
                j = int(rng.integers(len(pool)))
                pool[j], pool[-1] = pool[-1], pool[j]
                out.append(pool.pop())
            else:
                out.append(pool.pop(0))
    if len(out) < plan.quota:
        if buffer > 1:
            pool = [pool[i] for i in rng.permutation(len(pool))]
        out.extend(pool[: plan.quota - len(out)])
    return out


def worker_skips(quotas_in_batches: list[int], consumed: int) -> tuple[list[int], int]:
    """Where each worker stands after the rank consumed `consumed` batches of an epoch.

    The DataLoader returns batches round-robin over its workers (in order, starting with
    worker 0), skipping exhausted workers; this replays that order.

    Returns:
        (batches each worker already produced, the worker that produces the next batch). A
        resumed loader must start its round-robin at that worker: its worker p plays the role
        of worker ``(p + next) % workers``.
    """
    n = len(quotas_in_batches)
    skips = [0] * n
    w = 0
    for _ in range(consumed):
        for _ in range(n):  # next worker in cyclic order with batches left
            if skips[w] < quotas_in_batches[w]:
                break
            w = (w + 1) % n
        else:
            break
        skips[w] += 1
        w = (w + 1) % n
    for _ in range(n):  # point at a worker that still has batches, if any
        if skips[w] < quotas_in_batches[w]:
            break
        w = (w + 1) % n
    return skips, w
