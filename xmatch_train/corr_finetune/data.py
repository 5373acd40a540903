"""Annotated pairs in memory, as the model sees them: both views prepared exactly as
``xmatch match`` prepares them (`xmatch_train.match.preprocess.prepare`), the annotated entries
as a dense (N, N) target and mask per pair, and the split by pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xmatch_train.corr_finetune.annotations import SPLITS, AnnotatedPair
from xmatch_train.corr_finetune.entries import Entries, pair_entries
from xmatch_train.data.transforms import DisplayConfig
from xmatch_train.match.images import read_image
from xmatch_train.match.preprocess import prepare


@dataclass
class PairSet:
    """Prepared pairs.

    Attributes:
        ids: (P,) pair ids.
        view0, view1: (P, 1, S, S) float32 model inputs in [0, 1].
        target: (P, N, N) float32: 1 at annotated positives, 0 elsewhere.
        mask: (P, N, N) float32: 1 at annotated entries.
        entries: per pair, its `Entries`.
    """

    ids: list[str]
    view0: torch.Tensor
    view1: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    entries: list[Entries]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: list[str]) -> PairSet:
        """The pairs of `ids`, in that order."""
        index = {p: k for k, p in enumerate(self.ids)}
        rows = [index[p] for p in ids]
        pick = torch.as_tensor(rows, dtype=torch.long)
        return PairSet(
            list(ids),
            self.view0[pick],
            self.view1[pick],
            self.target[pick],
            self.mask[pick],
            [self.entries[k] for k in rows],
        )

    @property
    def dropped(self) -> int:
        """Annotated point pairs the model does not see."""
        return sum(e.dropped for e in self.entries)

    def positive_fraction(self) -> float:
        """Positive share of the annotated entries (the chance AP)."""
        labels = np.concatenate([e.label for e in self.entries]) if self.entries else np.zeros(0)
        return float(labels.mean()) if labels.size else float("nan")


def _borders(option: str, image) -> bool:
    return option == "crop" or (option == "auto" and image.format == "dicom")


def load_pairs(
    pairs: list[AnnotatedPair],
    size: int,
    display: DisplayConfig,
    grid: tuple[int, int],
    fit: str = "pad",
    borders: str = "auto",
) -> PairSet:
    """Read, prepare and map every pair (`read_image` -> `prepare` -> `pair_entries`)."""
    n = grid[0] * grid[1]
    v0, v1, targets, masks, entries = [], [], [], [], []
    for pair in pairs:
        prepared = []
        for path in (pair.image0, pair.image1):
            image = read_image(path)
            prepared.append(prepare(image, size, display, fit, _borders(borders, image)))
        e = pair_entries(pair, prepared[0].frame, prepared[1].frame, grid)
        target, mask = e.dense(n)
        v0.append(prepared[0].image)
        v1.append(prepared[1].image)
        targets.append(target)
        masks.append(mask)
        entries.append(e)
    return PairSet(
        [p.id for p in pairs],
        torch.from_numpy(np.stack(v0))[:, None],  # (P, 1, S, S)
        torch.from_numpy(np.stack(v1))[:, None],
        torch.from_numpy(np.stack(targets)),  # (P, N, N)
        torch.from_numpy(np.stack(masks)),
        entries,
    )


def split_pairs(
    pairs: list[AnnotatedPair], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """{split: pair ids}: the file's own splits when every pair has one, else a seeded
    shuffle by pair (round(P x fraction) pairs each for test and val, the rest trains).

    Raises:
        ValueError: some pairs have a split and others not; or nothing left to train on.
    """
    given = [p.split for p in pairs]
    if all(s is not None for s in given):
        return {s: [p.id for p in pairs if p.split == s] for s in SPLITS}
    if any(s is not None for s in given):
        raise ValueError(
            "annotations: some pairs have a 'split' and others not; give every pair one, or none"
        )
    ids = [p.id for p in pairs]
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = int(round(len(ids) * test_fraction))
    n_val = int(round(len(ids) * val_fraction))
    test = sorted(ids[k] for k in order[:n_test])
    val = sorted(ids[k] for k in order[n_test : n_test + n_val])
    train = sorted(ids[k] for k in order[n_test + n_val :])
    if not train:
        raise ValueError(f"annotations: {len(ids)} pairs leave none to train on")
    return dict(train=train, val=val, test=test)
