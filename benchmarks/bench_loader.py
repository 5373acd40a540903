"""Loader throughput: decoded view pairs per second from a local store.

Compares, in the same run and on the same store:
  * `PairStream` (shard-sliced reads, shuffle buffer, random pair, flips with the matching
    permutation of C, photometric draws) with 0, 1 and 2 DataLoader workers: the pairs/s the
    loader hands to the training loop (float16 line integrals and C, as a GPU receives them);
  * the same with the batch stage (`BatchTransform`: display window, photometric augmentation)
    run on the CPU in the main process, i.e. the whole input pipeline of a CPU-only run;
  * a naive map-style dataset reading each sample with its own integer index (``views[i]``,
    ``corr[i]``) in random order, with the same per-item work, with 0 and 2 workers.

Usage:
    python benchmarks/bench_loader.py [--store data/demo.zarr] [--pairs 3000]

Without --store (and without data/demo.zarr) a 256 px store of 2 procedural phantoms x 128
samples is built first with `drrgen build` in a temporary folder. Target: >= 1,000 pairs/s
with 2 workers on 2 cores, so the loader never starves a GPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

from xmatch_train.data import (
    AugmentConfig,
    BatchTransform,
    PairStream,
    StreamOptions,
    draw_photometric,
    make_loader,
    read_meta,
    sample_mask,
)

AUGMENT = AugmentConfig(brightness=0.1, contrast=0.2, invert=0.2, hflip=0.5)


class NaiveDataset(Dataset):
    """Map-style: one integer-indexed read per array and sample (what not to do)."""

    def __init__(self, path: str):
        self.path, self.group = path, None
        self.n = read_meta(path).n_samples

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if self.group is None:
            self.group = zarr.open_group(self.path, mode="r")
        views, corr = self.group["views"][i], self.group["corr"][i, 0]
        rng = np.random.default_rng(i)
        return {
            "drr0": views[0][None],
            "drr1": views[1][None],
            "photo0": draw_photometric(rng, AUGMENT),
            "photo1": draw_photometric(rng, AUGMENT),
            "corr_0to1": corr,
        }


def timed(batches, pairs: int) -> float:
    """Pairs per second over the first `pairs` pairs (after the first batch, which pays for
    worker start-up)."""
    it = iter(batches)
    first = next(it)
    n, start = 0, time.perf_counter()
    for batch in it:
        n += batch["drr0"].shape[0]
        if n >= pairs:
            break
    del first
    return n / (time.perf_counter() - start)


def stream_rate(path: str, workers: int, pairs: int, batch: int, transform: bool = False) -> float:
    meta = read_meta(path)
    options = StreamOptions(
        batch_size=batch, buffer=4 * meta.block, augment=AUGMENT, geometry=False
    )
    ds = PairStream([meta], [sample_mask(meta, None)], options, num_workers=workers)
    prepare = BatchTransform()

    def batches():
        epoch = 0
        while True:
            ds.set_epoch(epoch)
            for b in make_loader(ds):
                yield prepare(b) if transform else b
            epoch += 1

    return timed(batches(), pairs)


def naive_rate(path: str, workers: int, pairs: int, batch: int) -> float:
    ds = NaiveDataset(path)

    def batches():
        while True:
            yield from DataLoader(
                ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=False
            )

    return timed(batches(), pairs)


def default_store(tmp: Path) -> str:
    if Path("data/demo.zarr").is_dir():
        return "data/demo.zarr"
    from drrgen.build import BuildConfig, ClusterOptions, build
    from drrgen.phantoms import make_phantom
    from drrgen.volume import write_ct

    cts = tmp / "cts"
    for seed in range(2):
        write_ct(make_phantom(seed), cts / f"phantom_{seed}.nii.gz")
    print("building a 256-sample store (2 phantoms x 128, 256 px, patch 16) ...", flush=True)
    cfg = BuildConfig(samples_per_ct=128, block=32, size=256, patch=16, seed=0)
    build(
        cts,
        str(tmp / "bench.zarr"),
        cfg,
        ClusterOptions(workers=0),
        progress=False,
        echo=lambda _: None,
    )
    return str(tmp / "bench.zarr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store to read (default: data/demo.zarr or a built one)")
    parser.add_argument("--pairs", type=int, default=3000, help="pairs timed per setting")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--naive-pairs", type=int, default=300, help="pairs timed, naive reader")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or default_store(Path(tmp))
        meta = read_meta(path)
        print(
            f"store {path}: {meta.n_samples} samples, V={meta.n_views}, "
            f"{meta.image_shape[0]} px, N={meta.n_patches}, block {meta.block}; "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print("| reader | workers | pairs/s |\n|---|---|---|")
        for workers in (0, 1, 2):
            rate = stream_rate(path, workers, args.pairs, args.batch)
            print(f"| PairStream (shard slices) | {workers} | {rate:.0f} |", flush=True)
        rate = stream_rate(path, 2, args.pairs, args.batch, transform=True)
        print(f"| PairStream + BatchTransform on CPU | 2 | {rate:.0f} |", flush=True)
        for workers in (0, 2):
            rate = naive_rate(path, workers, args.naive_pairs, args.batch)
            print(f"| naive per-sample indexing | {workers} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
