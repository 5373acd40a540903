"""Two-view study batches for the fracture classifier, resumable per epoch.

`load_image` reads one radiograph (8- or 16-bit grayscale, RGB or palette PNG/JPEG) as a
(size, size) float32 image in [0, 1]: 8-bit values / 255 (16-bit and float images are scaled
by their 0.5 / 99.5 percentiles), padded with black to a centred square (aspect ratio kept),
resized with an antialiasing bilinear filter.

`StudyDataset` items (stacked by the DataLoader), keyed as the pretraining's pair batches:
    ``view0``, ``view1`` (1, S, S) float32 in [0, 1], the study's two views
        (`studies.choose_pair`);
    ``photo`` (2, 3) float32 photometric parameters, row v for view v (contrast, brightness, invert:
        `xmatch_train.data.transforms.draw_photometric`; identity when not training);
    ``label`` float32 (1 = abnormal), ``index`` int64 study index, ``pair`` (2,) int64.
Each item's randomness comes from ``default_rng([seed, epoch, index])``, so batches do not
depend on the number of workers. `EpochBatches` orders the studies of an epoch with a
permutation seeded by (seed, epoch), shards them over DDP ranks and skips the batches already
consumed when a run resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from xmatch_train.data.transforms import IDENTITY_PHOTOMETRIC, AugmentConfig, draw_photometric
from xmatch_train.finetune.studies import Study, StudyDataError, choose_pair
from xmatch_train.interrupts import InterruptSafeLoader

Image.MAX_IMAGE_PIXELS = None  # radiographs can be large; they are trusted local files


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read a radiograph as a (size, size) float32 image in [0, 1] (see the module docstring).

    Raises:
        StudyDataError: the file cannot be read as an image (names the file).
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float32)
                lo, hi = np.percentile(arr, [0.5, 99.5])
                arr = np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0, 1)
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as err:
        raise StudyDataError(f"{path}: cannot read image ({err})") from err
    if not np.isfinite(arr).all():  # a float image with NaN / inf pixels
        raise StudyDataError(f"{path}: non-finite pixel values")
    h, w = arr.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = arr
    if side != size:
        square = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
    return np.clip(square, 0.0, 1.0).astype(np.float32, copy=False)


class StudyDataset(Dataset):
    """The two views of each study, with a label.

    Args:
        studies: the studies (each with >= 2 images).
        image_size: side of the network input, pixels.
        train: random view pair and photometric augmentation; otherwise the fixed pair.
        augment: augmentation strengths (photometric fields only; flips/rotations must be 0).
        seed: seed of view pairs and augmentations.
        cache: keep decoded images in memory (small datasets; per worker process).
    """

    def __init__(
        self,
        studies: list[Study],
        image_size: int,
        train: bool,
        augment: AugmentConfig = AugmentConfig(),
        seed: int = 0,
        cache: bool = False,
    ):
        if augment.hflip or augment.vflip or augment.rot90:
            raise ValueError(
                "data.augment: flips and rotations are not used for classification "
                "(set hflip, vflip and rot90 to 0); brightness, contrast and invert are"
            )
        self.studies, self.image_size, self.train = studies, int(image_size), train
        self.augment, self.seed, self.cache = augment, seed, cache
        self.epoch = 0
        self._images: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.studies)

    def set_epoch(self, epoch: int) -> None:
        """Epoch number mixed into every item's random draws."""
        self.epoch = int(epoch)

    def image(self, path: str) -> np.ndarray:
        """One decoded image (cached when `cache`)."""
        if not self.cache:
            return load_image(path, self.image_size)
        if path not in self._images:
            self._images[path] = load_image(path, self.image_size)
        return self._images[path]

    def __getitem__(self, index: int) -> dict:
        study = self.studies[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        pair = choose_pair(len(study.images), rng)
        view0, view1 = (self.image(study.images[k])[None] for k in pair)  # (1, S, S) each
        if rng is not None:
            photo = np.stack([draw_photometric(rng, self.augment) for _ in pair])
        else:
            photo = np.stack([IDENTITY_PHOTOMETRIC] * 2)
        return dict(
            view0=view0,
            view1=view1,
            photo=photo.astype(np.float32),
            label=np.float32(study.label),
            index=np.int64(index),
            pair=np.array(pair, dtype=np.int64),
        )


class EpochBatches(Sampler[list[int]]):
    """Batches of study indices for one epoch of one rank.

    Training: a permutation seeded by (seed, epoch), cut to whole batches on every rank
    (``drop_last``), rank r taking batches r, r + W, ...; the first `skip` batches are left
    out (resume). Evaluation (``shuffle=False``): every index in order, the last batch short.

    Args:
        n: dataset size.
        batch_size: per-rank batch size.
        seed, epoch: the permutation's seed.
        shuffle: permute (training) or keep the order (evaluation).
        world_size, rank: DDP layout.
        skip: batches of this epoch already consumed.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        world_size: int = 1,
        rank: int = 0,
        skip: int = 0,
    ):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.shuffle, self.world_size, self.rank, self.skip = shuffle, world_size, rank, skip

    def batches(self) -> list[list[int]]:
        """This rank's batches of the epoch, skipped ones excluded."""
        if not self.shuffle:
            idx = list(range(self.n))
            return [idx[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        order = np.random.default_rng([self.seed, self.epoch, 3]).permutation(self.n)
        per_round = self.batch_size * self.world_size
        rounds = self.n // per_round
        mine = [
            order[(r * self.world_size + self.rank) * self.batch_size :][: self.batch_size]
            for r in range(rounds)
        ]
        return [b.tolist() for b in mine[self.skip :]]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def batches_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per rank and epoch (whole batches only)."""
    return n // (batch_size * world_size)


def make_loader(
    dataset: StudyDataset, sampler: EpochBatches, workers: int, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over `dataset` in the order of `sampler`."""
    return InterruptSafeLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=False,
    )


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode PNGs; torch threads would oversubscribe cores


def to_device(batch: dict, device: torch.device | str) -> dict:
    """Tensors of a batch on `device` (labels float32)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
