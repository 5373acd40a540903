"""Resuming a run from ``ckpt/last.pt``: the checks that it is still the same run, the restore.

A checkpoint records the data layout (`Task.layout`: what the data order depends on) and the
resolved configuration it was trained with. A resume must find both unchanged, keys that only
say where or how fast the run goes aside (`xmatch_train.config.NOT_SETTINGS`: threads, device,
DataLoader workers of a fine-tuning, log and checkpoint frequencies, ...); anything else would
silently continue another run (a new ``optim.lr`` used to be ignored while ``config.yaml``
recorded it) or fail deep in ``load_state_dict``. Both refuse with one line instead.
"""

from __future__ import annotations

from pathlib import Path

from xmatch_train.config import changed_settings


def check_resume(ckpt: dict, cfg, layout: dict, path: Path) -> None:
    """Refuse to resume from `ckpt` (read from `path`) with another data layout or settings.

    Raises:
        ValueError: one line listing the differing keys (saved -> now) and what to do.
    """
    saved = ckpt.get("layout", {})
    diff = {k: (saved.get(k), v) for k, v in layout.items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            f"{path}: cannot resume exactly, the data layout changed {diff} (saved, now); "
            "use the saved settings, or start a fresh run (train.resume=false or a new run_dir)"
        )
    changed = changed_settings(cfg, ckpt["config"]) if "config" in ckpt else {}
    if changed:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(
            f"{path}: the run was trained with other settings ({listed}); revert them to "
            f"resume, or start a new run with another run_dir=... (train.resume=false starts "
            f"{cfg.run_dir} over)"
        )


def restore(ckpt: dict, path: Path, **parts) -> None:
    """Load the state dicts of `ckpt` into `parts` (model=..., optimizer=..., ...).

    Raises:
        ValueError: one line naming `path` when a state does not fit (the code changed since
            the checkpoint was written, or a checkpoint without its config).
    """
    try:
        for name, part in parts.items():
            part.load_state_dict(ckpt[name])
    except (RuntimeError, ValueError, KeyError) as err:
        text = " ".join(str(err).split())[:300]
        raise ValueError(
            f"{path}: its {name} state does not fit this run ({type(err).__name__}: {text}); "
            "start a new run with another run_dir=..."
        ) from None
