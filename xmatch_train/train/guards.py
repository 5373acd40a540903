"""What stops a run cleanly: a non-finite loss or gradient, Ctrl-C.

Non-finite steps stop the run before anything of them is saved. A NaN batch (a deleted or
damaged store shard reads as NaN fill) or a diverging step used to train on with loss=nan,
write NaN weights into ``ckpt/last.pt`` and fail only at the next validation, naming nothing.
`FiniteGuard.record` notes each step's loss and gradient norm on the device, with the task's
name for the step's batch (`Task.identify`: stores and sample indices, study ids);
`FiniteGuard.check` reads the notes in one host sync (all ranks' under DDP, so every rank
stops at the same step and names the same batch) and raises `NonFiniteError` naming the first
bad step and its batch. The loop checks before every log line, validation and checkpoint, so
the last checkpoint is always the last finite state.

Gradients are not checked under fp16 loss scaling: there, overflowing gradients are expected
and `torch.amp.GradScaler` skips those steps itself (a non-finite loss still stops the run).

Ctrl-C raises `Interrupted`, a `KeyboardInterrupt` saying where the run stands (`Progress`);
checkpoints are written under `xmatch_train.interrupts.deferred_interrupt`, so the file and the
record of it agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed

from xmatch_train.train.dist import Runtime
from xmatch_train.train.rundir import RunDir


class NonFiniteError(ValueError):
    """A non-finite loss or gradient: the step, its batch and what to look at, in one line."""


class FiniteGuard:
    """Per-step finiteness notes, checked in batches (see the module docstring).

    Args:
        identify: the task's name for a (raw) batch, e.g. ``store.zarr samples 8, 9``.
        rt: the runtime (DDP ranks compare notes).
        grads: check gradient norms too (False under fp16 loss scaling).
    """

    def __init__(self, identify: Callable[[dict], str], rt: Runtime, grads: bool = True):
        self.identify, self.rt, self.grads = identify, rt, grads
        self._values: list[torch.Tensor] = []  # per step: (loss, gradient norm) on the device
        self._steps: list[tuple[int, str]] = []

    def record(
        self,
        step: int,
        batch: dict,
        loss: torch.Tensor,
        model: torch.nn.Module,
        grad_norm: torch.Tensor | None = None,
    ) -> None:
        """Note step `step`'s loss and gradient norm (computed here unless given, e.g. by
        gradient clipping); no host sync."""
        if not self.grads:
            grad_norm = torch.zeros((), device=loss.device)
        elif grad_norm is None:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else loss.new_zeros(())
        self._values.append(torch.stack([loss.detach().float(), grad_norm.detach().float()]))
        self._steps.append((step, self.identify(batch)))

    def check(self) -> None:
        """Raise `NonFiniteError` if a step recorded since the last check was not finite."""
        if not self._values:
            return
        values = torch.stack(self._values)  # (steps, 2): loss, gradient norm
        finite = torch.isfinite(values).all(1).float()
        if self.rt.ddp:  # a step is bad when it is bad on any rank
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        values, finite = values.cpu(), finite.cpu()
        notes, self._values, self._steps = self._steps, [], []
        if bool(finite.all()):
            return
        first = int(torch.nonzero(finite == 0)[0])
        step, batch = notes[first]
        noted = [(self.rt.rank, *values[first].tolist(), batch)]
        if self.rt.ddp:  # every rank names the same culprit
            mine, noted = noted[0], [None] * self.rt.world_size
            torch.distributed.all_gather_object(noted, mine)
        raise NonFiniteError(_message(step, noted, self.rt.ddp))


def _message(step: int, noted: list[tuple[int, float, float, str]], ddp: bool) -> str:
    """One line naming the bad step: the batch with a non-finite loss, or (a non-finite
    gradient: averaged over the ranks under DDP) every rank's batch."""
    bad_loss = [n for n in noted if not math.isfinite(n[1])]
    if bad_loss:
        rank, loss, _, batch = bad_loss[0]
        what = f"loss ({loss}) on the batch of {batch}" + (f" (rank {rank})" if ddp else "")
    else:
        norm = noted[0][2]
        batches = "; ".join(f"rank {r}: {b}" if ddp else b for r, _, _, b in noted)
        what = f"gradient (norm {norm}) on the batch{'es' if ddp else ''} of {batches}"
    return (
        f"step {step}: non-finite {what}; stopped before saving anything of it: look for "
        "damaged inputs there (a deleted store shard reads as NaN) or, if they are sound, the "
        "training diverged (lower optim.lr, set optim.grad_clip)"
    )


@dataclass
class Progress:
    """Where a run stands, kept up to date by the loop (for `Interrupted`).

    Attributes:
        run_dir: the run directory.
        step, steps: steps done and the run's steps (None before training starts).
        saved: the step ``ckpt/last.pt`` holds (None: no checkpoint yet).
    """

    run_dir: Path
    step: int | None = None
    steps: int | None = None
    saved: int | None = None

    def __str__(self) -> str:
        if self.step is None:
            return "interrupted before training started"
        saved = (
            f"{RunDir(self.run_dir).ckpt('last')} holds step {self.saved}"
            if self.saved is not None
            else "no checkpoint yet (a rerun starts over)"
        )
        return f"interrupted at step {self.step} of {self.steps}; {saved}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``str()`` says where the run stands (`Progress`), in one line.

    Checkpoints are written to a temporary file and renamed, so ``ckpt/last.pt`` is the last
    complete one whenever the interrupt came; a rerun resumes from it (and drops log lines
    written after it).
    """

    def __init__(self, progress: Progress):
        super().__init__(str(progress))
