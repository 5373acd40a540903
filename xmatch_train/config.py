"""Typed run configuration: YAML files in ``pipelines/`` merged with dotted CLI overrides.

``load_config("pipelines/pretrain_cpu.yaml", ["optim.lr=3e-4", "model.name=cnn"])`` reads the
file, applies the overrides (values parsed as YAML scalars/lists), and builds the nested
dataclasses, refusing unknown keys and ill-typed values with a message naming the file and key
(`drrgen.typed_config`, the coercion the build configuration uses too).
The resolved configuration is saved next to the run's outputs (``config.yaml``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drrgen.typed_config import ConfigError, from_dict, load_typed
from xmatch_train.data.transforms import AugmentConfig, DisplayConfig
from xmatch_train.data.xray import XrayConfig
from xmatch_train.data.xray import problems as xray_problems
from xmatch_train.metrics import MetricConfig
from xmatch_train.models.registry import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """Which stores, which split, how to read them.

    Attributes:
        stores: store paths or URLs (all must share views, image size and patch grid).
        allow_incomplete: train on stores whose ``complete`` flag is not set.
        val_fraction, test_fraction: fractions of CT volumes held out (split by volume).
        split_seed: seed of the volume split.
        image_size: network input side; the store images are mean-pooled down to it
            (None: the store's size).
        batch_size: per-rank (per-GPU) batch size.
        num_workers: DataLoader workers per rank (0: read in the main process).
        buffer: shuffle-buffer size in samples (a few shards).
        mode: ``drop`` or ``wrap``: how ranks are equalised (see `data.plan`).
        display: line integral -> image transform.
        augment: training augmentations.
        xray: realistic X-ray rendering of the line integrals (`xmatch_train.data.xray`;
            off by default), for training and validation alike.
    """

    stores: tuple[str, ...] = ("data/store.zarr",)
    allow_incomplete: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    split_seed: int = 0
    image_size: int | None = None
    batch_size: int = 16
    num_workers: int = 2
    buffer: int = 256
    mode: str = "drop"
    display: DisplayConfig = field(default_factory=DisplayConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    xray: XrayConfig = field(default_factory=XrayConfig)


@dataclass(frozen=True)
class OptimConfig:
    """Adam with a cosine schedule (linear warm-up first).

    Attributes:
        lr: peak learning rate.
        betas: Adam betas.
        weight_decay: L2 penalty (Adam's, not decoupled).
        warmup_steps: linear warm-up from 0.
        min_lr_ratio: final learning rate / lr.
        grad_clip: max gradient norm (0: off).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings.

    Attributes:
        steps: optimizer steps of the whole run (the cosine schedule spans them); None:
            ``epochs`` x batches per epoch.
        epochs: used when `steps` is None.
        seed: seed of initialisation and data order.
        device: ``auto`` (CUDA if available, else CPU), ``cuda`` or ``cpu``.
        precision: ``auto`` (bf16 autocast on CUDA when supported, else fp16 with loss scaling;
            fp32 on CPU), ``fp32``, ``bf16`` or ``fp16``.
        threads: torch intra-op threads on CPU (None: torch's default).
        log_every: steps between JSONL log lines.
        val_every: steps between validations (0: only at the end).
        val_batches: validation batches per validation (None: the whole validation split).
        ckpt_every: steps between checkpoints (the last step always saves).
        resume: continue from ``run_dir/ckpt/last.pt`` when it exists.
        stop_after: stop this process after this many steps (a time-boxed job); rerun to resume.
        loss: ``auto`` (MSE for the ``cosine`` head, BCE for the ``prior`` head), ``mse`` or
            ``bce`` (pretraining).
        pos_weight: weight of entries with C > 0.05 in the loss (pretraining; 1 = plain).
    """

    steps: int | None = None
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    log_every: int = 10
    val_every: int = 200
    val_batches: int | None = 50
    ckpt_every: int = 200
    resume: bool = True
    stop_after: int | None = None
    loss: str = "auto"
    pos_weight: float = 1.0


@dataclass(frozen=True)
class PretrainConfig:
    """A correspondence pretraining run.

    Attributes:
        run_dir: where config, split, logs, checkpoints and figures go.
        data, model, optim, train, metrics: the parts.
    """

    run_dir: str = "runs/pretrain"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricConfig = field(default_factory=MetricConfig)


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls=PretrainConfig):
    """Read a YAML config (``defaults:`` includes resolved), apply dotted overrides, return the
    typed dataclass with its ranges checked (`drrgen.typed_config.load_typed`).

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, ill-typed or out-of-range
            value; the message names the file, the overrides and the key.
    """
    return load_typed(cls, path, overrides, check_ranges)


# (section, key, test, what the value must be): checked for every config that has the section
# (pretraining and fine-tuning share `OptimConfig` / `TrainConfig`, both have ``data``).
_RANGES = (
    ("optim", "lr", lambda v: v > 0, "> 0"),
    ("optim", "weight_decay", lambda v: v >= 0, ">= 0"),
    ("data", "batch_size", lambda v: v >= 1, ">= 1"),
    ("train", "steps", lambda v: v is None or v >= 1, ">= 1 (or null: use train.epochs)"),
)


def check_ranges(cfg):
    """`cfg` when its numeric settings are in range; a `ConfigError` naming the key otherwise
    (so that ``optim.lr=-1`` fails at once, not as a PyTorch traceback)."""
    for section, key, ok, must in _RANGES:
        part = getattr(cfg, section, None)
        if part is None or not hasattr(part, key):
            continue
        value = getattr(part, key)
        if not ok(value):
            raise ConfigError(f"{section}.{key}: must be {must}, got {value!r}")
    xray = getattr(getattr(cfg, "data", None), "xray", None)
    if isinstance(xray, XrayConfig) and xray_problems(xray):
        raise ConfigError(f"data.xray.{xray_problems(xray)[0]}")
    return cfg


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists) of a config dataclass, for YAML/JSON/checkpoints."""

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x

    return plain(asdict(cfg))


def save_config(cfg, path: str | Path) -> None:
    """Write the resolved config as YAML (to a temporary file, renamed: never half written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    tmp.replace(path)


# Keys that say where a run goes or how fast it goes, not what it computes: a run resumed,
# or kept in a Table-3 table, with other values of these is still the same run.
NOT_SETTINGS = (
    "run_dir",
    "table",
    "data.num_workers",
    "data.cache_images",
    "train.threads",
    "train.device",
    "train.resume",
    "train.stop_after",
    "train.log_every",
    "train.ckpt_every",
)


def changed_settings(cfg, saved: dict) -> dict[str, tuple[Any, Any]]:
    """Where the resolved config `saved` (a ``config.yaml`` or a checkpoint's ``config``)
    differs from `cfg`, keys of `NOT_SETTINGS` aside.

    Keys `saved` lacks (options added to the code since) count at their defaults.

    Returns:
        {dotted key: (saved value, value in `cfg`)}, in key order; {} when none differ.
    """
    now = to_dict(cfg)
    try:
        saved = to_dict(from_dict(type(cfg), saved))
    except ConfigError:  # an option removed since: compare the plain values
        now = yaml.safe_load(yaml.safe_dump(now))

    def walk(a, b, prefix=""):
        if prefix.rstrip(".") in NOT_SETTINGS:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                yield from walk(a.get(key), b.get(key), f"{prefix}{key}.")
        elif a != b:
            yield prefix.rstrip("."), (a, b)

    changed = dict(walk(saved, now))
    if getattr(getattr(cfg, "model", None), "head", None) == "cosine":
        # Unused by the cosine head; runs saved before it came from the store recorded 16.
        changed.pop("model.grid", None)
    return changed
