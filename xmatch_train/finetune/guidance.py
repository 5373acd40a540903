"""Pretrained correspondence runs: encoder initialisation and the frozen guidance model.

`load_pretrain_run` reads a run of ``xmatch pretrain`` (its ``config.yaml`` and checkpoint);
`pretrained_encoder_state` extracts the ViT-S encoder weights of a ``vit_s`` run for the
classifier; `CorrespondenceGuide` wraps any pretrained correspondence model (frozen, eval mode)
to predict C for the attention guidance at train and test time.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xmatch_train.config import PretrainConfig, load_config
from xmatch_train.models import build_model, encoder_state_dict
from xmatch_train.train.checkpoint import load_checkpoint
from xmatch_train.train.rundir import RunDir


def checkpoint_path(source: str | Path, which: str = "best") -> Path:
    """The checkpoint file of a run directory (``ckpt/<which>.pt``, falling back to
    ``ckpt/last.pt``) or `source` itself when it is a file.

    Raises:
        FileNotFoundError: neither exists (names the path and how to make it).
    """
    source = Path(source).expanduser()
    if source.is_file():
        return source
    try:
        return RunDir(source).find_checkpoint(which)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{source}: no checkpoint (expected a file, or a run directory with ckpt/{which}.pt); "
            "run `xmatch pretrain` first"
        ) from None


def pretrain_run_dir(source: str | Path, which: str = "best") -> Path:
    """The run directory of a pretraining given as a directory or a checkpoint file."""
    return RunDir.of_checkpoint(checkpoint_path(source, which)).root


def load_pretrain_run(source: str | Path, which: str = "best") -> tuple[PretrainConfig, dict]:
    """The config and checkpoint of a pretraining run.

    Args:
        source: run directory, or a checkpoint file inside ``RUN_DIR/ckpt/``.
        which: ``best`` or ``last`` for a run directory.
    """
    path = checkpoint_path(source, which)
    ckpt = load_checkpoint(path)
    config = RunDir.of_checkpoint(path).config
    if config.is_file():
        cfg = load_config(config)
    elif isinstance(ckpt.get("config"), dict):
        from xmatch_train.config import from_dict

        cfg = from_dict(PretrainConfig, ckpt["config"], str(path))
    else:
        raise FileNotFoundError(f"{path}: no config.yaml beside the checkpoint's run")
    return cfg, ckpt


def pretrain_config(source: str | Path, which: str = "best") -> PretrainConfig:
    """The config of a pretraining run (its ``config.yaml``; the checkpoint's copy only when
    the file is gone), without loading its weights."""
    config = RunDir(pretrain_run_dir(source, which)).config
    return load_config(config) if config.is_file() else load_pretrain_run(source, which)[0]


def pretrained_encoder_state(
    source: str | Path, which: str = "best"
) -> tuple[dict, PretrainConfig]:
    """`MultiViewViT` weights of a ``vit_s`` correspondence pretraining, with its config."""
    cfg, ckpt = load_pretrain_run(source, which)
    if cfg.model.name != "vit_s":
        raise ValueError(
            f"{source}: a '{cfg.model.name}' pretraining; the classifier's encoder starts only "
            "from a 'vit_s' pretraining (xmatch pretrain ... model.name=vit_s)"
        )
    return encoder_state_dict(ckpt["model"]), cfg


def pool_correspondence(corr: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Max-pool (B, N, N) correspondence of a finer square patch grid to `grid` (rows, cols).

    A coarse patch pair corresponds as strongly as its best pair of fine patches.
    """
    b, n, _ = corr.shape
    side = int(round(math.sqrt(n)))
    gr, gc = grid
    if side * side != n or side % gr or side % gc:
        raise ValueError(f"cannot pool a {n}-patch correspondence onto a {gr} x {gc} grid")
    fr, fc = side // gr, side // gc
    x = corr.view(b, gr, fr, gc, fc, gr, fr, gc, fc)
    return x.amax(dim=(2, 4, 6, 8)).reshape(b, gr * gc, gr * gc)


class CorrespondenceGuide(nn.Module):
    """A frozen correspondence model predicting C for the classifier's patch grid.

    Args:
        model: a `CorrespondenceModel` (its parameters are frozen here).
        input_size: image side the model was trained on, pixels.
        grid: the classifier's patch grid (rows, cols).
    """

    def __init__(self, model: nn.Module, input_size: int, grid: tuple[int, int]):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.input_size, self.grid = int(input_size), tuple(grid)

    def train(self, mode: bool = True):  # noqa: D102 - stays in eval mode (frozen)
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """(B, 2, 1, H, W) images in [0, 1] -> (B, N, N) float32 C of view A to view B."""
        a, b = views[:, 0], views[:, 1]
        if a.shape[-1] != self.input_size or a.shape[-2] != self.input_size:
            size = (self.input_size, self.input_size)
            a = F.interpolate(a, size=size, mode="bilinear", antialias=True, align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", antialias=True, align_corners=False)
        corr = self.model(a, b)["corr"].float()
        if corr.shape[-1] != self.grid[0] * self.grid[1]:
            corr = pool_correspondence(corr, self.grid)
        return corr

    @classmethod
    def from_run(
        cls, source: str | Path, grid: tuple[int, int], which: str = "best"
    ) -> CorrespondenceGuide:
        """Load a pretraining run (directory or checkpoint file) as a guide for `grid`."""
        cfg, ckpt = load_pretrain_run(source, which)
        model = build_model(replace(cfg.model, pretrained_file=None, pretrained=None))
        model.load_state_dict(ckpt["model"])
        size = cfg.data.image_size or cfg.model.img_size
        guide = cls(model, size, grid)
        n_model = _model_patches(model, size)
        side, g = int(round(math.sqrt(n_model))), grid[0]
        if n_model != grid[0] * grid[1] and (side % g or side * side != n_model):
            raise ValueError(
                f"{source}: its correspondence has {n_model} patches per view, which does not "
                f"pool onto the classifier's {grid[0]} x {grid[1]} patch grid"
            )
        return guide


@torch.no_grad()
def _model_patches(model: nn.Module, size: int) -> int:
    """Patches per view the model predicts for `size` x `size` inputs (one tiny forward)."""
    was = model.training
    model.eval()
    x = torch.zeros(1, 1, size, size)
    n = int(model(x, x)["corr"].shape[-1])
    model.train(was)
    return n
