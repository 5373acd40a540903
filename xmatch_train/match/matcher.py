"""A trained correspondence run, loaded once, that predicts C for two prepared images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xmatch_train.config import PretrainConfig
from xmatch_train.data.transforms import DisplayConfig
from xmatch_train.match.preprocess import Prepared, prepare
from xmatch_train.models import model_from_checkpoint
from xmatch_train.train import dist
from xmatch_train.train.rundir import RunDir


@dataclass
class Matcher:
    """A correspondence model with what its inputs need.

    Attributes:
        model: the `CorrespondenceModel`, in eval mode on `device`.
        cfg: the run's config.
        run_dir: the run directory.
        checkpoint: the checkpoint file loaded.
        step: its training step.
        image_size: input side (``data.image_size``, else the store's size).
        grid: the token grid (rows, cols); N = rows * cols.
        device: where the model runs.
        train_mean: (N, N) the run's training mean matrix (the no-image baseline), or None.
    """

    model: torch.nn.Module
    cfg: PretrainConfig
    run_dir: Path
    checkpoint: Path
    step: int
    image_size: int
    grid: tuple[int, int]
    device: torch.device
    train_mean: np.ndarray | None = None

    @property
    def display(self) -> DisplayConfig:
        """The run's display transform (percentiles, stride)."""
        return self.cfg.data.display

    def prepare(self, image, fit: str = "pad", borders: bool = False) -> Prepared:
        """`xmatch_train.match.preprocess.prepare` at this run's size and window."""
        return prepare(image, self.image_size, self.display, fit, borders)

    @torch.no_grad()
    def predict(self, a: Prepared, b: Prepared) -> np.ndarray:
        """(N, N) float32 predicted C: row = patch of A, column = patch of B (row-major)."""
        x0, x1 = a.tensor().to(self.device), b.tensor().to(self.device)  # (1, 1, s, s) each
        corr = self.model(x0, x1)["corr"]  # (1, N, N)
        return corr[0].float().cpu().numpy()


def load_matcher(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> Matcher:
    """Load a correspondence run (``xmatch pretrain``) for matching.

    Args:
        run_dir: the run directory (or a checkpoint file inside its ``ckpt/``).
        checkpoint: ``best`` or ``last`` (``best`` falls back to ``last``).
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        UserError / ValueError / FileNotFoundError: not a correspondence run, no checkpoint,
            weights that do not fit the config (one line naming the run).
    """
    from xmatch_train.finetune.guidance import load_pretrain_run, pretrain_run_dir
    from xmatch_train.finetune.report import is_finetune_run

    if checkpoint not in ("best", "last"):
        raise ValueError(f"--checkpoint {checkpoint}: expected best or last")
    source = Path(run_dir)
    if is_finetune_run(source):
        raise ValueError(
            f"{source}: a fine-tuning run; xmatch match needs a correspondence run "
            "(xmatch pretrain)"
        )
    cfg, ckpt = load_pretrain_run(source, checkpoint)
    run = pretrain_run_dir(source, checkpoint)
    model = model_from_checkpoint(cfg.model, ckpt["model"], _checkpoint_file(source, checkpoint))
    rt = dist.setup(device, "fp32")
    model = model.to(rt.device).eval()
    size = _image_size(cfg, run)
    return Matcher(
        model=model,
        cfg=cfg,
        run_dir=run,
        checkpoint=_checkpoint_file(source, checkpoint),
        step=int(ckpt.get("step", -1)),
        image_size=size,
        grid=_grid(model, size, rt.device, run),
        device=rt.device,
        train_mean=_train_mean(run),
    )


def _checkpoint_file(source: Path, which: str) -> Path:
    from xmatch_train.finetune.guidance import checkpoint_path

    return checkpoint_path(source, which)


def _image_size(cfg: PretrainConfig, run: Path) -> int:
    """The input side the run trained at: ``data.image_size``, else its store's view size."""
    if cfg.data.image_size:
        return int(cfg.data.image_size)
    if cfg.model.name == "vit_s":
        return int(cfg.model.img_size)
    for store in cfg.data.stores:
        size = _store_size(store, run)
        if size:
            return size
    raise ValueError(
        f"{run}: data.image_size is not set and the training store "
        f"({', '.join(cfg.data.stores)}) is not here to tell the view size"
    )


def _store_size(store: str, run: Path) -> int | None:
    """The ``size`` attribute of `store` (looked up as given, then beside the run's folders)."""
    import zarr

    for base in (Path.cwd(), *run.resolve().parents):
        path = base / store
        if (path / "zarr.json").is_file():
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
            return int(attrs.get("size") or (attrs.get("params") or {}).get("size") or 0) or None
    return None


@torch.no_grad()
def _grid(model: torch.nn.Module, size: int, device: torch.device, run: Path) -> tuple[int, int]:
    """The square token grid of the model at `size` (one forward on zeros)."""
    x = torch.zeros(1, 1, size, size, device=device)
    n = int(model(x, x)["corr"].shape[-1])
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{run}: the model predicts {n} patches per view, not a square grid")
    return (side, side)


def _train_mean(run: Path) -> np.ndarray | None:
    from xmatch_train.pretrain.baselines import load_train_mean

    if not RunDir(run).train_mean.is_file():
        return None
    return load_train_mean(run)[0]
