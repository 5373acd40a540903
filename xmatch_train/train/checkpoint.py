"""Checkpoints that resume a run exactly: tensors and plain values only.

A checkpoint is a dict of state dicts, ints, floats, strings and lists, written with
`torch.save` to a temporary file and renamed (a kill never leaves a half-written file), and read
with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write `state` (tensors, state dicts, plain values) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a checkpoint this code wrote (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not an xmatch checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    """Torch CPU (and CUDA) generator states."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by `rng_state`."""
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
