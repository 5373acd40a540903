"""The training loop (single process or DDP under torchrun), for any task.

`fit` runs any task: read top to bottom: runtime -> data -> model and optimizer -> resume ->
loop (forward, loss, backward, step, log, validate, checkpoint). A task
(`xmatch_train.pretrain.CorrespondenceTask`: view pairs, loss on C, validation AP against the
no-image baselines; `xmatch_train.finetune.FinetuneTask`: two-view studies, BCE, validation
AUC/kappa) supplies the data, the model, the loss and the validation.
Everything a resumed run needs is in ``run_dir/ckpt/last.pt``: model, optimizer, scheduler,
loss scaler, step, epoch, the number of batches consumed in the epoch, the best validation
score and the torch RNG state; a resume must find the saved settings (`resume.check_resume`).
A non-finite loss or gradient stops the run before anything of that step is logged, validated
or saved; Ctrl-C raises `guards.Interrupted` saying where the run stands (`guards`).

The run folder's layout: `xmatch_train.train.rundir.RunDir`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from xmatch_train.config import save_config, to_dict
from xmatch_train.interrupts import deferred_interrupt
from xmatch_train.train import dist
from xmatch_train.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from xmatch_train.train.guards import FiniteGuard, Interrupted, Progress
from xmatch_train.train.logger import JsonlLogger, read_log
from xmatch_train.train.resume import check_resume, restore
from xmatch_train.train.rundir import RunDir


def cosine_schedule(steps: int, warmup: int = 0, min_ratio: float = 0.0):
    """LR multiplier at step t: linear warm-up, then cosine from 1 to `min_ratio` at `steps`."""

    def factor(t: int) -> float:
        if warmup and t < warmup:
            return (t + 1) / warmup
        progress = min(1.0, (t - warmup) / max(1, steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class EpochIterator:
    """Endless batches over epochs; remembers (epoch, batches consumed in it) for resuming.

    Args:
        batches: ``batches(epoch, skip)`` -> the batches of `epoch` after its first `skip`.
        epoch, position: where to start.
    """

    def __init__(
        self, batches: Callable[[int, int], Iterable[dict]], epoch: int = 0, position: int = 0
    ):
        self.batches, self.epoch, self.position = batches, epoch, position
        self._it = None

    def __next__(self) -> dict:
        while True:
            if self._it is None:
                self._it = iter(self.batches(self.epoch, self.position))
            try:
                batch = next(self._it)
            except StopIteration:
                self._it, self.epoch, self.position = None, self.epoch + 1, 0
                continue
            self.position += 1
            return batch


def _trim_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a killed run's tail)."""
    path = RunDir(run_dir).log
    if path.is_file():
        keep = [r for r in read_log(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")


class Task(Protocol):
    """What `fit` needs from a training task.

    Attributes:
        cfg: the run's config (``run_dir``, ``optim``, ``train`` and task-specific parts).
        name: ``pretrain`` / ``finetune`` (progress bar, messages, checkpoints).
        score: validation metric (higher is better) that selects ``ckpt/best.pt``.
        samples_per_batch: per-rank batch size (throughput).
    """

    cfg: object
    name: str
    score: str
    samples_per_batch: int

    def layout(self, rt: dist.Runtime) -> dict:
        """Data settings a resumed run must share (saved in checkpoints)."""

    def prepare(self, rt: dist.Runtime, run_dir: Path, resuming: bool) -> None:
        """Read the data and fix the split (reloaded from `run_dir` when resuming)."""

    def save_split(self, run_dir: Path) -> None:
        """Write ``split.json`` (rank 0)."""

    def steps(self) -> int:
        """Optimizer steps of the whole run."""

    def build_model(self) -> torch.nn.Module:
        """The model (on the CPU; initialised, e.g. from pretrained weights)."""

    def param_groups(self, model: torch.nn.Module) -> Iterable:
        """Parameters (or Adam parameter groups) to optimise."""

    def batches(self, epoch: int, skip: int, rt: dist.Runtime) -> Iterable[dict]:
        """This rank's training batches of `epoch` after its first `skip`."""

    def loss(self, model: torch.nn.Module, batch: dict, rt: dist.Runtime) -> torch.Tensor:
        """Scalar training loss of a batch (forward under ``rt.autocast()``)."""

    def identify(self, batch: dict) -> str:
        """The samples of a training batch, for messages (e.g. ``a.zarr samples 8, 9``)."""

    def has_validation(self) -> bool:
        """Whether there is a validation split."""

    def validate(self, model: torch.nn.Module, rt: dist.Runtime) -> dict:
        """Validation metrics (a dict holding `score`), computed on rank 0."""

    def describe(self, model: torch.nn.Module, rt: dist.Runtime, steps: int) -> str:
        """One line about the run (printed at the start)."""

    def format_val(self, val: dict) -> str:
        """Short text of validation metrics for the progress bar."""


def fit(task: Task) -> Path:
    """Train (or resume) `task` in ``task.cfg.run_dir``; returns the run directory.

    Raises:
        NonFiniteError: a step's loss or gradient was not finite (nothing of it is saved).
        Interrupted: Ctrl-C (a `KeyboardInterrupt` saying where the run stands).
    """
    cfg = task.cfg
    rt = dist.setup(cfg.train.device, cfg.train.precision)
    progress = Progress(Path(cfg.run_dir))
    try:
        return _fit(task, rt, progress)
    except KeyboardInterrupt:
        raise Interrupted(progress) from None
    finally:
        dist.teardown(rt)


def _train_step(task, model, batch, rt, optimizer, scaler, grad_clip, guard, step) -> torch.Tensor:
    """Forward, backward and optimizer step on `batch`, the `step`-th of the run (from 0);
    returns the loss. Loss and gradient norm go to `guard`, checked later in one sync."""
    loss = task.loss(model, batch, rt)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    grad_norm = None
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    guard.record(step + 1, batch, loss, model, grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss


@dataclass
class _Run:
    """What one training run holds between steps: the parts a checkpoint saves, and where the
    run stands (step, best validation score, the last validation)."""

    model: torch.nn.Module  # unwrapped (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step: int = 0
    epoch: int = 0
    position: int = 0  # batches consumed in `epoch`
    best: float = -math.inf
    val: dict = field(default_factory=dict)


def _fit(task: Task, rt: dist.Runtime, progress: Progress) -> Path:
    t = task.cfg.train
    if t.threads and rt.device.type == "cpu":
        torch.set_num_threads(t.threads)
    run_dir = Path(task.cfg.run_dir)
    last_path = RunDir(run_dir).ckpt("last")
    ckpt = load_checkpoint(last_path) if t.resume and last_path.is_file() else None
    if ckpt is not None:
        check_resume(ckpt, task.cfg, task.layout(rt), last_path)
    task.prepare(rt, run_dir, resuming=ckpt is not None)
    steps = task.steps()
    run = _build(task, rt, steps)
    if ckpt is not None:
        _restore(run, ckpt, last_path, rt, t.seed)
    progress.step, progress.steps = run.step, steps
    progress.saved = run.step if ckpt is not None else None
    logger = _open_run(task, rt, run, steps, resuming=ckpt is not None) if rt.master else None
    if run.step >= steps:  # a finished run: nothing to train, keep its summary
        if logger is not None:
            print(f"{run_dir}: already trained ({run.step} of {steps} steps); nothing to do")
            logger.close()
        return run_dir
    start_step, t_start = run.step, time.perf_counter()
    _train(task, rt, run, steps, logger, progress)
    if rt.master:
        if not task.has_validation():  # no validation split: the last weights are the best
            _save(RunDir(run_dir).ckpt("best"), task, rt, run)
        elapsed = time.perf_counter() - t_start
        _write_summary(run_dir, task, rt, run, steps, run.step - start_step, elapsed)
        logger.close()
    return run_dir


def _build(task: Task, rt: dist.Runtime, steps: int) -> _Run:
    """Model, Adam, the cosine schedule and the loss scaler, seeded by ``train.seed``."""
    torch.manual_seed(task.cfg.train.seed)
    model = task.build_model().to(rt.device)
    o = task.cfg.optim
    optimizer = torch.optim.Adam(
        task.param_groups(model), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(steps, o.warmup_steps, o.min_lr_ratio)
    )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    return _Run(model, optimizer, scheduler, scaler)


def _restore(run: _Run, ckpt: dict, path: Path, rt: dist.Runtime, seed: int) -> None:
    """Load `ckpt` into `run`: weights, optimizer, schedule, scaler, position and RNG."""
    parts = dict(model=run.model, optimizer=run.optimizer, scheduler=run.scheduler)
    restore(ckpt, path, **parts, scaler=run.scaler)
    run.step, run.epoch, run.position = ckpt["step"], ckpt["epoch"], ckpt["position"]
    run.best = ckpt.get("best_val", ckpt.get("best_val_ap", -math.inf))  # older runs
    if rt.master:
        set_rng_state(ckpt["rng"])
    else:  # other ranks: a fresh, rank- and step-specific stream
        torch.manual_seed(seed + 1000 * rt.rank + run.step)


def _open_run(task: Task, rt: dist.Runtime, run: _Run, steps: int, resuming: bool):
    """Rank 0: write config and split, cut the log back to the checkpoint, print the banner;
    returns the logger."""
    run_dir = Path(task.cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(task.cfg, RunDir(run_dir).config)
    task.save_split(run_dir)
    if resuming:
        _trim_log(run_dir, run.step)
    print(
        task.describe(run.model, rt, steps) + (f", resuming at step {run.step}" if resuming else "")
    )
    return JsonlLogger(run_dir)


def _save(path: Path, task: Task, rt: dist.Runtime, run: _Run) -> None:
    save_checkpoint(
        path,
        dict(
            model=run.model.state_dict(),
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            scaler=run.scaler.state_dict(),
            step=run.step,
            epoch=run.epoch,
            position=run.position,
            best_val=run.best,
            score=task.score,
            task=task.name,
            rng=rng_state(),
            layout=task.layout(rt),
            config=to_dict(task.cfg),
            model_name=getattr(task.cfg.model, "name", task.name),
        ),
    )


def _train(task: Task, rt: dist.Runtime, run: _Run, steps: int, logger, progress: Progress):
    """The loop: step, log, validate (rank 0), checkpoint, until `steps` or ``stop_after``."""
    t = task.cfg.train
    paths = RunDir(task.cfg.run_dir)
    model = run.model
    if rt.ddp:
        model = DistributedDataParallel(
            model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None
        )
    data = EpochIterator(lambda e, skip: task.batches(e, skip, rt), run.epoch, run.position)
    bar = tqdm(
        total=steps, initial=run.step, disable=not rt.master, dynamic_ncols=True, desc=task.name
    )
    guard = FiniteGuard(task.identify, rt, grads=not run.scaler.is_enabled())
    model.train()
    loss_sum, n_loss, t_log, start_step = 0.0, 0, time.perf_counter(), run.step
    try:
        while run.step < steps:
            batch = next(data)
            loss = _train_step(
                task,
                model,
                batch,
                rt,
                run.optimizer,
                run.scaler,
                task.cfg.optim.grad_clip,
                guard,
                run.step,
            )
            run.scheduler.step()
            run.step = progress.step = run.step + 1
            run.epoch, run.position = data.epoch, data.position
            # Summed on the device: one host sync per log line, not per step.
            loss_sum, n_loss = loss_sum + loss.detach().float(), n_loss + 1
            bar.update(1)
            step = run.step
            stop = t.stop_after is not None and step - start_step >= t.stop_after
            # The same decisions on every rank; only rank 0 validates and writes.
            val_due = task.has_validation() and (
                (t.val_every and step % t.val_every == 0) or step == steps
            )
            ckpt_due = step % t.ckpt_every == 0 or step == steps or stop
            log_due = step % t.log_every == 0 or step == steps
            if log_due or val_due or ckpt_due:
                guard.check()  # nothing of a non-finite step is logged, validated or saved
            if log_due:
                now = time.perf_counter()
                mean_loss = dist.mean_over_ranks(float(loss_sum) / n_loss, rt)
                sps = n_loss * task.samples_per_batch * rt.world_size / max(now - t_log, 1e-9)
                if logger is not None:
                    lr = run.scheduler.get_last_lr()[0]
                    logger.log(
                        dict(step=step, epoch=data.epoch, loss=mean_loss, lr=lr, samples_per_s=sps)
                    )
                    bar.set_postfix(loss=f"{mean_loss:.3g}", samples_s=f"{sps:.1f}")
                loss_sum, n_loss, t_log = 0.0, 0, now
            if rt.master and val_due:
                _validate(task, rt, run, logger, bar, paths.ckpt("best"))
            if rt.master and ckpt_due:
                with deferred_interrupt():  # the file and the record of it agree
                    _save(paths.ckpt("last"), task, rt, run)
                    progress.saved = step
            if val_due or ckpt_due:
                dist.barrier(rt)
            if stop:
                break
    finally:  # also on errors and Ctrl-C: the message goes on a line of its own
        bar.close()


def _validate(task: Task, rt: dist.Runtime, run: _Run, logger, bar, best_path: Path) -> None:
    """Rank 0: validate, log, and save `best_path` when the score improved."""
    run.val = {"step": run.step, "split": "val", **task.validate(run.model, rt)}
    logger.log(run.val)
    bar.write(f"step {run.step}: {task.format_val(run.val)}")
    score = run.val[task.score]
    if score > run.best or not math.isfinite(run.best):
        run.best = score if math.isfinite(score) else run.best
        _save(best_path, task, rt, run)


def _write_summary(
    run_dir: Path, task: Task, rt: dist.Runtime, run: _Run, steps: int, trained: int, elapsed: float
) -> None:
    """``summary.json``: steps, wall time and throughput of this session, the best and the
    last validation."""
    summary = dict(
        steps=run.step,
        done=run.step >= steps,
        wall_s=elapsed,
        samples_per_s=trained * task.samples_per_batch * rt.world_size / max(elapsed, 1e-9),
        world_size=rt.world_size,
        device=str(rt.device),
        score=task.score,
        best_val=run.best if math.isfinite(run.best) else None,
        last_val=run.val,
    )
    text = json.dumps(summary, indent=1, default=str)
    RunDir(run_dir).summary.write_text(text, encoding="utf-8")
