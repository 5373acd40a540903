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
    python benchmarks/bench_loader.py [--store data/demo.zarr] [--epochs 3]

Without --store (and without data/demo.zarr) a 256 px store of 2 procedural phantoms x 128
samples is built first with `drrgen build` in a temporary folder. Target: >= 1,000 pairs/s
with 2 workers on 2 cores, so the loader never starves a GPU.
"""

from __future__ import annotations

import argparse
import os
import resource
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
        meta = read_meta(path)
        self.n, self.vid = meta.n_samples, meta.volume_id

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if self.group is None:
            self.group = zarr.open_group(self.path, mode="r")
        views, corr = self.group["views"][i], self.group["corr"][i, 0]
        rng = np.random.default_rng(i)
        return {
            "drr": views,
            "photo": np.stack([draw_photometric(rng, AUGMENT) for _ in range(2)]),
            "corr_0to1": corr,
            "info": np.array([0, 1, self.vid[i], 0, i], dtype=np.int64),
        }


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (loader workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(epochs) -> tuple[float, float]:
    """(pairs per wall second, CPU milliseconds per pair) over whole epochs.

    `epochs` yields one iterable of batches per epoch; workers exit at the end of each epoch,
    so their CPU time is counted. Worker start-up is included (it is paid every epoch).
    """
    n, wall, cpu = 0, time.perf_counter(), cpu_seconds()
    for batches in epochs:
        for batch in batches:
            n += batch["corr_0to1"].shape[0]
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return n / wall, 1000 * cpu / n


def stream_epochs(path: str, workers: int, n_epochs: int, batch: int, transform: bool = False):
    meta = read_meta(path)
    options = StreamOptions(
        batch_size=batch, buffer=4 * meta.block, augment=AUGMENT, geometry=False
    )
    ds = PairStream([meta], [sample_mask(meta, None)], options, num_workers=workers)
    prepare = BatchTransform()
    for epoch in range(n_epochs):
        ds.set_epoch(epoch)
        loader = make_loader(ds)
        yield (prepare(b) for b in loader) if transform else loader


def naive_epochs(path: str, workers: int, n_epochs: int, batch: int):
    ds = NaiveDataset(path)
    for _ in range(n_epochs):
        yield DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)


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
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per setting")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or default_store(Path(tmp))
        meta = read_meta(path)
        print(
            f"store {path}: {meta.n_samples} samples, V={meta.n_views}, "
            f"{meta.image_shape[0]} px, N={meta.n_patches}, block {meta.block}; "
            f"{cores} cores, load average {os.getloadavg()[0]:.1f}"
        )
        print(
            "pairs/s: measured wall-clock rate (depends on what else runs); CPU ms/pair: all "
            f"processes; on {cores} idle cores: {cores} x 1000 / (CPU ms/pair), the rate "
            "when the workers have the cores to themselves\n"
        )
        print("| reader | workers | pairs/s | CPU ms/pair | on idle cores |\n|---|---|---|---|---|")

        def row(name, workers, epochs):
            rate, ms = measure(epochs)
            idle = min(max(workers, 1), cores) * 1000 / ms
            print(f"| {name} | {workers} | {rate:.0f} | {ms:.2f} | {idle:.0f} |", flush=True)

        for workers in (0, 1, 2):
            row(
                "PairStream (shard slices)",
                workers,
                stream_epochs(path, workers, args.epochs, args.batch),
            )
        row(
            "PairStream + BatchTransform on CPU",
            2,
            stream_epochs(path, 2, args.epochs, args.batch, transform=True),
        )
        for workers in (0, 2):
            row("naive per-sample indexing", workers, naive_epochs(path, workers, 1, args.batch))


if __name__ == "__main__":
    main()
