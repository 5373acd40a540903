"""Per-step metrics as JSON lines (and TensorBoard when it is installed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xmatch_train.train.rundir import RunDir


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class JsonlLogger:
    """Append one JSON object per call to ``run_dir/log.jsonl``; mirror scalars to TensorBoard.

    Args:
        run_dir: the run directory.
        tensorboard: also write TensorBoard events under ``run_dir/tb`` if tensorboard imports.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.path = RunDir(run_dir).log
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def log(self, record: dict[str, Any]) -> None:
        """Write `record` (must contain ``step``); NaN/inf become null."""
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        if self._tb is not None:
            prefix = record.get("split", "train")
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, int | float) and math.isfinite(v):
                    self._tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        """Flush and close."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``log.jsonl`` (a torn last line from a kill is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
