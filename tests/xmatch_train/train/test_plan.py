"""Shard planning across DDP ranks and DataLoader workers (pure functions, no I/O)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xmatch_train.data import Shard, WorkerPlan, epoch_plan, shuffle_order, worker_skips


def shards(counts, block=4):
    """Shards of one store with `counts[i]` selected samples in block i."""
    return [
        Shard(0, i * block, (i + 1) * block, tuple(range(i * block, i * block + c)))
        for i, c in enumerate(counts)
    ]


def emitted(plans, buffer=1, seed=0):
    out = []
    for w, plan in enumerate(plans):
        rng = np.random.default_rng([seed, w])
        out += [s for _, s, _ in shuffle_order(plan, rng, buffer)]
    return out


@pytest.mark.parametrize("world,workers", [(1, 1), (2, 1), (2, 2), (3, 2), (1, 3)])
def test_every_sample_exactly_once_across_ranks_and_workers(world, workers):
    # 12 full shards of 4: 48 samples, divisible by every layout's batches of 2.
    all_shards = shards([4] * 12)
    seen = Counter()
    per_rank = []
    for rank in range(world):
        plans = epoch_plan(
            all_shards,
            seed=1,
            epoch=3,
            world_size=world,
            rank=rank,
            num_workers=workers,
            batch_size=2,
            mode="drop",
        )
        # shards are dealt to ranks first, then to workers: no shard in two places
        for plan in plans:
            for s in plan.shards:
                seen[("shard", s.start)] += 1
        got = emitted(plans, buffer=6)
        per_rank.append(len(got))
        seen.update(got)
    samples = Counter({k: v for k, v in seen.items() if not isinstance(k, tuple)})
    assert samples == Counter(range(48))
    assert all(v == 1 for k, v in seen.items() if isinstance(k, tuple))
    assert len(set(per_rank)) == 1  # equal sample counts per rank


def test_drop_equalises_uneven_ranks_without_duplicates():
    all_shards = shards([4, 4, 4, 3, 1])  # 16 samples, uneven
    counts, union = [], []
    for rank in range(2):
        plans = epoch_plan(
            all_shards, seed=0, epoch=0, world_size=2, rank=rank, num_workers=2, batch_size=2
        )
        assert all(p.quota % 2 == 0 for p in plans)  # whole batches per worker
        got = emitted(plans, buffer=5)
        counts.append(len(got))
        union += got
    assert counts[0] == counts[1] > 0
    assert len(union) == len(set(union))  # dropped, never repeated


def test_wrap_tops_up_the_smaller_rank_from_its_own_shards():
    all_shards = shards([4, 4, 4, 2])
    out = {}
    for rank in range(2):
        plans = epoch_plan(
            all_shards,
            seed=0,
            epoch=0,
            world_size=2,
            rank=rank,
            num_workers=1,
            batch_size=2,
            mode="wrap",
        )
        out[rank] = emitted(plans)
        own = {s for p in plans for sh in p.shards for s in sh.samples}
        assert set(out[rank]) <= own
    assert len(out[0]) == len(out[1])
    assert set(out[0]) | set(out[1]) == set(range(14))


def test_shard_order_depends_on_seed_and_epoch_only():
    all_shards = shards([4] * 10)

    def order(seed, epoch):
        return [s.start for s in epoch_plan(all_shards, seed=seed, epoch=epoch)[0].shards]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 5)) == [s.start for s in all_shards]


def test_shuffle_buffer_only_mixes_loaded_shards():
    plan = WorkerPlan(tuple(shards([4] * 6)), quota=24)
    order = shuffle_order(plan, np.random.default_rng(0), buffer=8)
    assert sorted(s for _, s, _ in order) == list(range(24))
    for n, (_, s, _) in enumerate(order):
        # item n leaves an 8-sample buffer that has seen n + 8 samples: shards 0 .. (n + 7) // 4
        assert s // 4 <= (n + 7) // 4
    assert [s for _, s, _ in order] != list(range(24))
    in_order = shuffle_order(plan, np.random.default_rng(0), buffer=0)
    assert [s for _, s, _ in in_order] == list(range(24))


def test_worker_skips_replay_the_round_robin():
    assert worker_skips([3, 1, 2], 0) == ([0, 0, 0], 0)
    assert worker_skips([3, 1, 2], 4) == ([2, 1, 1], 2)  # w0 w1 w2 w0 | w2 w0
    assert worker_skips([3, 1, 2], 5) == ([2, 1, 2], 0)
    assert worker_skips([3, 1, 2], 6)[0] == [3, 1, 2]


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="too few samples"):
        epoch_plan(shards([1]), seed=0, epoch=0, world_size=2, rank=0, batch_size=2)
