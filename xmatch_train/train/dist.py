"""Device, precision and DDP, chosen once at start-up.

Under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK set) the process group is initialised with NCCL
on CUDA and gloo on CPU; otherwise the run is a single process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes.

    Attributes:
        rank, local_rank, world_size: DDP layout (0, 0, 1 without torchrun).
        device: the torch device.
        amp_dtype: autocast dtype, or None for float32.
        ddp: whether a process group is initialised.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    amp_dtype: torch.dtype | None
    ddp: bool

    @property
    def master(self) -> bool:
        """Rank 0: writes logs, checkpoints and figures."""
        return self.rank == 0

    def autocast(self):
        """Autocast context for forward passes (a no-op in float32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _device(choice: str, local_rank: int) -> torch.device:
    if choice not in ("auto", "cuda", "cpu"):
        raise ValueError(f"train.device must be auto, cuda or cpu, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device=cuda: no CUDA device is available here; use train.device=auto or cpu"
        )
    if choice != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in table:
        raise ValueError(f"train.precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("train.precision=fp16 needs CUDA; use bf16 or fp32 on CPU")
    return table[precision]


def setup(device: str = "auto", precision: str = "auto") -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun."""
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    rank = int(os.environ.get("RANK", "0")) if ddp else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if ddp else 0
    world = int(os.environ.get("WORLD_SIZE", "1")) if ddp else 1
    dev = _device(device, local_rank)
    if ddp and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, local_rank, world, dev, _amp_dtype(precision, dev), ddp)


def teardown(rt: Runtime) -> None:
    """Leave the process group."""
    if rt.ddp and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: float, rt: Runtime) -> float:
    """Average a float over DDP ranks (the value itself without DDP)."""
    if not rt.ddp:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return float(t.item()) / rt.world_size


def barrier(rt: Runtime) -> None:
    """Wait for every rank (no-op without DDP)."""
    if rt.ddp:
        dist.barrier()
