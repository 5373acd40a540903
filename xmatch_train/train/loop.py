"""`pretrain`: the correspondence pretraining loop (single process or DDP under torchrun).

Read top to bottom: runtime -> data -> model and optimizer -> resume -> loop (forward, MSE,
backward, step, log, validate, checkpoint). Everything a resumed run needs is in
``run_dir/ckpt/last.pt``: model, optimizer, scheduler, loss scaler, step, epoch, the number of
batches consumed in the epoch, best validation AP and the torch RNG state.

Run directory:
    config.yaml   the resolved configuration
    split.json    the train / val / test CT volumes
    log.jsonl     one line per logged step (train) and per validation (split = "val")
    ckpt/last.pt  latest checkpoint; ckpt/best.pt  best validation AP
    summary.json  steps, wall time, throughput, final validation metrics
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from xmatch_train.config import PretrainConfig, save_config, to_dict
from xmatch_train.data import (
    BatchTransform,
    PairStream,
    StreamOptions,
    VolumeSplit,
    load_split,
    make_loader,
    read_meta,
    sample_mask,
    save_split,
    split_volumes,
)
from xmatch_train.data.store import StoreMeta
from xmatch_train.evaluate import evaluate
from xmatch_train.models import build_model, correspondence_loss, count_parameters
from xmatch_train.train import dist
from xmatch_train.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from xmatch_train.train.logger import JsonlLogger, read_log


def cosine_schedule(steps: int, warmup: int = 0, min_ratio: float = 0.0):
    """LR multiplier at step t: linear warm-up, then cosine from 1 to `min_ratio` at `steps`."""

    def factor(t: int) -> float:
        if warmup and t < warmup:
            return (t + 1) / warmup
        progress = min(1.0, (t - warmup) / max(1, steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class EpochIterator:
    """Endless batches over epochs; remembers (epoch, batches consumed in it) for resuming."""

    def __init__(self, stream: PairStream, epoch: int = 0, position: int = 0, pin: bool = False):
        self.stream, self.epoch, self.position, self.pin = stream, epoch, position, pin
        self._it = None

    def __next__(self) -> dict:
        while True:
            if self._it is None:
                self.stream.set_epoch(self.epoch, self.position)
                self._it = iter(make_loader(self.stream, self.pin))
            try:
                batch = next(self._it)
            except StopIteration:
                self._it, self.epoch, self.position = None, self.epoch + 1, 0
                continue
            self.position += 1
            return batch


def volume_keys(metas: list[StoreMeta]) -> list[str]:
    """Keys of every CT with at least one written sample, over all stores."""
    return [m.volume_key(v) for m in metas for v in set(m.volume_id[m.volume_id >= 0].tolist())]


def make_stream(
    cfg: PretrainConfig, metas, keys, rt: dist.Runtime | None, train: bool
) -> PairStream:
    """The training stream (this rank's share) or the validation/test stream (one process)."""
    d = cfg.data
    options = StreamOptions(
        batch_size=d.batch_size,
        seed=cfg.train.seed,
        train=train,
        mode=d.mode if train else "all",
        buffer=d.buffer,
        shuffle=True,
        augment=d.augment,
        geometry=False,
    )
    masks = [sample_mask(m, keys) for m in metas]
    world, rank = (rt.world_size, rt.rank) if (train and rt is not None) else (1, 0)
    return PairStream(metas, masks, options, world_size=world, rank=rank, num_workers=d.num_workers)


def _layout(cfg: PretrainConfig, rt: dist.Runtime) -> dict:
    d = cfg.data
    return dict(
        world_size=rt.world_size,
        num_workers=d.num_workers,
        batch_size=d.batch_size,
        stores=list(d.stores),
        image_size=d.image_size,
    )


def _check_resume(ckpt: dict, cfg: PretrainConfig, rt: dist.Runtime, path: Path) -> None:
    saved, now = ckpt.get("layout", {}), _layout(cfg, rt)
    diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            f"{path}: cannot resume exactly, the data layout changed {diff} (saved, now); "
            "use the saved settings, or start a fresh run (train.resume=false or a new run_dir)"
        )


def _trim_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a killed run's tail)."""
    path = run_dir / "log.jsonl"
    if path.is_file():
        keep = [r for r in read_log(path) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def pretrain(cfg: PretrainConfig) -> Path:
    """Train (or resume) the run described by `cfg`; returns the run directory."""
    rt = dist.setup(cfg.train.device, cfg.train.precision)
    try:
        return _pretrain(cfg, rt)
    finally:
        dist.teardown(rt)


def _pretrain(cfg: PretrainConfig, rt: dist.Runtime) -> Path:
    t = cfg.train
    if t.threads and rt.device.type == "cpu":
        torch.set_num_threads(t.threads)
    run_dir = Path(cfg.run_dir)
    last_path, best_path = run_dir / "ckpt" / "last.pt", run_dir / "ckpt" / "best.pt"
    ckpt = load_checkpoint(last_path) if t.resume and last_path.is_file() else None
    if ckpt is not None:
        _check_resume(ckpt, cfg, rt, last_path)

    # ---- data: split by CT volume, this rank's share of the training shards --------------
    metas = [read_meta(p, allow_incomplete=cfg.data.allow_incomplete) for p in cfg.data.stores]
    split_path = run_dir / "split.json"
    if ckpt is not None and split_path.is_file():
        split = load_split(split_path)
    else:
        d = cfg.data
        split = split_volumes(volume_keys(metas), d.val_fraction, d.test_fraction, d.split_seed)
    transform = BatchTransform(cfg.data.display, cfg.data.image_size)
    transform.factor(metas[0].image_shape)  # fail early on an image size that does not fit
    train_stream = make_stream(cfg, metas, split.keys("train"), rt, train=True)
    val_stream = make_stream(cfg, metas, split.keys("val"), None, False) if split.val else None
    steps = t.steps or t.epochs * train_stream.batches_per_epoch(0)

    # ---- model, optimizer, schedule ------------------------------------------------------
    torch.manual_seed(t.seed)
    model = build_model(cfg.model).to(rt.device)
    o = cfg.optim
    optimizer = torch.optim.Adam(
        model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(steps, o.warmup_steps, o.min_lr_ratio)
    )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    step, epoch, position, best = 0, 0, 0, -math.inf
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, epoch, position = ckpt["step"], ckpt["epoch"], ckpt["position"]
        best = ckpt["best_val_ap"]
        if rt.master:
            set_rng_state(ckpt["rng"])
        else:  # other ranks: a fresh, rank- and step-specific stream
            torch.manual_seed(t.seed + 1000 * rt.rank + step)

    logger = None
    if rt.master:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        save_split(split_path, metas, split)
        if ckpt is not None:
            _trim_log(run_dir, step)
        logger = JsonlLogger(run_dir)
        print(
            f"xmatch pretrain: {cfg.model.name} ({count_parameters(model) / 1e6:.2f} M params) "
            f"on {rt.device} x{rt.world_size}, amp={rt.amp_dtype}; {train_stream.n_samples} "
            f"training samples ({len(split.train)} CTs), {steps} steps"
            + (f", resuming at step {step}" if ckpt is not None else "")
        )
    raw_model = model
    if rt.ddp:
        model = DistributedDataParallel(
            model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None
        )

    def checkpoint(path: Path) -> None:
        save_checkpoint(
            path,
            dict(
                model=raw_model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                step=step,
                epoch=data.epoch,
                position=data.position,
                best_val_ap=best,
                rng=rng_state(),
                layout=_layout(cfg, rt),
                config=to_dict(cfg),
                model_name=cfg.model.name,
            ),
        )

    def validate() -> dict:
        val_stream.set_epoch(0)  # the same fixed random subset every time
        loader = make_loader(val_stream)
        metrics = evaluate(raw_model, loader, rt, transform, cfg.metrics, t.val_batches)
        return {"step": step, "split": "val", **metrics}

    # ---- the loop ----------------------------------------------------------------------
    data = EpochIterator(train_stream, epoch, position, pin=rt.device.type == "cuda")
    bar = tqdm(
        total=steps, initial=step, disable=not rt.master, dynamic_ncols=True, desc="pretrain"
    )
    model.train()
    loss_sum, n_loss, t_log, t_start, start_step = (
        0.0,
        0,
        time.perf_counter(),
        time.perf_counter(),
        step,
    )
    val = {}
    while step < steps:
        batch = transform(next(data), rt.device)  # display, augmentation, resize on the device
        target = batch["corr_0to1"]
        with rt.autocast():
            pred = model(batch["view0"], batch["view1"])["corr"]
        if pred.shape != target.shape:
            raise ValueError(
                f"model predicts {tuple(pred.shape)}, the store's corr is {tuple(target.shape)}: "
                "the token grid must equal the patch grid (adjust data.image_size, "
                "model.backbone_index or model.patch_size)"
            )
        loss = correspondence_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if o.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        loss_sum, n_loss = loss_sum + loss.item(), n_loss + 1
        bar.update(1)

        if step % t.log_every == 0 or step == steps:
            now = time.perf_counter()
            mean_loss = dist.mean_over_ranks(loss_sum / n_loss, rt)
            sps = n_loss * cfg.data.batch_size * rt.world_size / max(now - t_log, 1e-9)
            if logger is not None:
                logger.log(
                    dict(
                        step=step,
                        epoch=data.epoch,
                        loss=mean_loss,
                        lr=scheduler.get_last_lr()[0],
                        samples_per_s=sps,
                    )
                )
                bar.set_postfix(loss=f"{mean_loss:.3g}", pairs_s=f"{sps:.1f}")
            loss_sum, n_loss, t_log = 0.0, 0, now
        stop = t.stop_after is not None and step - start_step >= t.stop_after
        # The same decisions on every rank; only rank 0 validates and writes.
        val_due = bool(split.val) and ((t.val_every and step % t.val_every == 0) or step == steps)
        ckpt_due = step % t.ckpt_every == 0 or step == steps or stop
        if rt.master and val_due:
            val = validate()
            logger.log(val)
            bar.write(f"step {step}: val mse {val['mse']:.3g} ap {val['ap']:.3f}")
            if val["ap"] > best or not math.isfinite(best):
                best = val["ap"] if math.isfinite(val["ap"]) else best
                checkpoint(best_path)
        if rt.master and ckpt_due:
            checkpoint(last_path)
        if val_due or ckpt_due:
            dist.barrier(rt)
        if stop:
            break
    bar.close()

    if rt.master:
        if val_stream is None:  # no validation split: the last weights are the best we have
            checkpoint(best_path)
        elapsed = time.perf_counter() - t_start
        summary = dict(
            steps=step,
            done=step >= steps,
            wall_s=elapsed,
            pairs_per_s=(step - start_step)
            * cfg.data.batch_size
            * rt.world_size
            / max(elapsed, 1e-9),
            world_size=rt.world_size,
            device=str(rt.device),
            best_val_ap=best if math.isfinite(best) else None,
            last_val=val,
        )
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        logger.close()
    return run_dir


def load_run_split(run_dir: str | Path) -> VolumeSplit:
    """The volume split a run trained with."""
    return load_split(Path(run_dir) / "split.json")
