"""The run folder: one place that names its files (pretraining and fine-tuning alike).

RUN_DIR/
  config.yaml     the resolved configuration (`xmatch_train.config.save_config`)
  split.json      the train / val / test CT volumes (or studies)
  log.jsonl       one line per logged step (train) and per validation (split = "val")
  summary.json    steps, wall time, throughput, the best and the last validation
  train_mean.npz  pretraining only: the training split's mean matrix (the `mean` baseline)
  ckpt/last.pt    the latest checkpoint (everything a resume needs)
  ckpt/best.pt    the best validation score's weights
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = ("best", "last")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder; nothing is created or read here."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root).expanduser())

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> RunDir:
        """The run a checkpoint file belongs to (``RUN_DIR/ckpt/X.pt``, or a file beside
        ``config.yaml``)."""
        path = Path(path)
        return cls(path.parent.parent if path.parent.name == "ckpt" else path.parent)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def train_mean(self) -> Path:
        return self.root / "train_mean.npz"

    def ckpt(self, which: str) -> Path:
        """``ckpt/<which>.pt`` (``best`` or ``last``), whether or not it exists."""
        return self.root / "ckpt" / f"{which}.pt"

    def find_checkpoint(self, which: str = "best") -> Path:
        """``ckpt/<which>.pt``, falling back to ``ckpt/last.pt`` (a run stopped before its
        first validation has no best).

        Raises:
            FileNotFoundError: neither exists (names the run and how to make one).
        """
        for name in (which, "last"):
            if self.ckpt(name).is_file():
                return self.ckpt(name)
        raise FileNotFoundError(
            f"{self.root}: no checkpoint (expected ckpt/{which}.pt or ckpt/last.pt); "
            "train the run first"
        )
