"""Train / validation / test splits by CT volume, never by sample.

A volume is identified by its sha256 from the store's volume table (falling back to its path), so
the same CT gets the same split in every store built from it, and a run's split can be applied
to a different store at evaluation time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmatch_train.data.store import StoreMeta

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VolumeSplit:
    """Volume keys per split.

    Attributes:
        train, val, test: sorted volume keys (sha256 or path).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def keys(self, name: str) -> set[str]:
        """The keys of split `name` ('train', 'val', 'test', or 'all' for all three)."""
        if name == "all":
            return set(self.train) | set(self.val) | set(self.test)
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS + ('all',)}")
        return set(getattr(self, name))


def _count(fraction: float, n: int) -> int:
    """Volumes for a held-out split: at least one when the fraction is positive and n >= 3."""
    if fraction <= 0:
        return 0
    return max(1 if n >= 3 else 0, int(round(fraction * n)))


def split_volumes(keys, val: float = 0.1, test: float = 0.2, seed: int = 0) -> VolumeSplit:
    """Assign volumes to splits with a seeded permutation of the sorted keys.

    Args:
        keys: volume keys (duplicates ignored).
        val, test: fractions of volumes held out for validation and test.
        seed: permutation seed.

    Returns:
        The `VolumeSplit`; train keeps at least one volume.
    """
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(
            f"split fractions must be in [0, 1) with val + test < 1, got {val}, {test}"
        )
    uniq = sorted(set(keys))
    n = len(uniq)
    if n == 0:
        raise ValueError("no volumes to split")
    order = [uniq[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = _count(test, n)
    n_val = _count(val, n - n_test) if n - n_test >= 2 else 0
    n_val = min(n_val, n - n_test - 1)
    return VolumeSplit(
        test=tuple(sorted(order[:n_test])),
        val=tuple(sorted(order[n_test : n_test + n_val])),
        train=tuple(sorted(order[n_test + n_val :])),
    )


def sample_mask(meta: StoreMeta, keys: set[str] | None) -> np.ndarray:
    """(S,) bool: written samples whose volume key is in `keys` (None: every written sample)."""
    written = meta.volume_id >= 0
    if keys is None:
        return written
    ids = np.unique(meta.volume_id[written])
    chosen = [vid for vid in ids if meta.volume_key(vid) in keys]
    return written & np.isin(meta.volume_id, chosen)


def split_record(metas: list[StoreMeta], split: VolumeSplit) -> dict:
    """A JSON-able description of the split: per split, the volumes of every store."""
    record: dict = {"splits": {}}
    for name in SPLITS:
        keys = split.keys(name)
        rows = []
        for store_index, meta in enumerate(metas):
            for vid in np.unique(meta.volume_id[meta.volume_id >= 0]):
                if meta.volume_key(vid) in keys:
                    entry = meta.volumes.get(int(vid), {})
                    n = int(np.sum(meta.volume_id == vid))
                    rows.append(
                        dict(
                            key=meta.volume_key(vid),
                            store=meta.path,
                            store_index=store_index,
                            id=int(vid),
                            path=entry.get("path"),
                            samples=n,
                        )
                    )
        record["splits"][name] = rows
    record["keys"] = {name: sorted(split.keys(name)) for name in SPLITS}
    return record


def save_split(path: str | Path, metas: list[StoreMeta], split: VolumeSplit) -> None:
    """Write `split_record` as JSON to `path`."""
    Path(path).write_text(json.dumps(split_record(metas, split), indent=1), encoding="utf-8")


def load_split(path: str | Path) -> VolumeSplit:
    """Read a split written by `save_split`."""
    try:
        keys = json.loads(Path(path).read_text(encoding="utf-8"))["keys"]
        return VolumeSplit(**{name: tuple(keys[name]) for name in SPLITS})
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a split file ({err})") from err
