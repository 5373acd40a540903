"""`xmatch eval`: evaluate trained runs on a store; Table-1-like Markdown, JSON and figures."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xmatch_train.config import PretrainConfig, changed_settings, load_config, to_dict
from xmatch_train.data import (
    BatchTransform,
    PairStream,
    StreamOptions,
    load_split,
    make_loader,
    read_meta,
    sample_mask,
)
from xmatch_train.data.store import StoreError, StoreMeta
from xmatch_train.data.xray import XrayConfig
from xmatch_train.metrics import CorrespondenceMetrics
from xmatch_train.models import model_from_checkpoint
from xmatch_train.pretrain.baselines import BaselineMetrics, load_train_mean
from xmatch_train.pretrain.evaluate import predict
from xmatch_train.pretrain.figures import plot_curves, plot_pair
from xmatch_train.train import dist
from xmatch_train.train.checkpoint import load_checkpoint
from xmatch_train.train.logger import read_log
from xmatch_train.train.rundir import RunDir

MESSAGE_PASSING = {"superglue", "loftr", "transformer_mp"}
LABELS = {
    "cnn": "- (CNN only)",
    "superglue": "SuperGlue module",
    "loftr": "LoFTR module",
    "transformer_mp": "Standard transformer",
    "transformer": "Standard transformer",
    "vit_s": "ViT-S (early fusion)",
}


def eval_keys(metas: list[StoreMeta], run_dir: Path, split: str) -> set[str] | None:
    """Volume keys to evaluate a run on (None = every sample).

    ``auto`` keeps the CTs the run neither trained nor validated on: its test volumes when the
    store is its own, every volume of a store built from new CTs.
    """
    if split == "all":
        return None
    run_split = load_split(RunDir(run_dir).split)
    if split == "auto":
        seen = run_split.keys("train") | run_split.keys("val")
        every = {m.volume_key(v) for m in metas for v in np.unique(m.volume_id[m.volume_id >= 0])}
        return every - seen
    return run_split.keys(split)


def _load_run(
    run_dir: Path, which: str, rt: dist.Runtime
) -> tuple[PretrainConfig, torch.nn.Module, int]:
    run = RunDir(run_dir)
    cfg = load_config(run.config)
    path = run.find_checkpoint(which)
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(cfg.model, ckpt["model"], path)
    return cfg, model.to(rt.device).eval(), int(ckpt.get("step", -1))


def _fmt(x, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:.2e}"


BASELINE_LABELS = {
    "zero": "no image: all zeros",
    "mean": "no image: training mean matrix",
}


def _verdict(r: dict) -> str:
    """AP gain over the mean-matrix baseline of the run's own training split, flagged."""
    if r["model"] in BASELINE_LABELS or r.get("mean_ap") is None:
        return "-"
    gain = r["ap"] - r["mean_ap"]
    return f"{100 * gain:+.1f}" + ("" if gain > 0 else " **below the mean matrix**")


def markdown_table(rows: dict[str, dict]) -> str:
    """Rows like the paper's Table 1 (percentages; MSE plain), the no-image baselines beside
    them, and each model's AP gain over its mean-matrix baseline (flagged when <= 0)."""
    head = (
        "| Run | Attention model | Message pass | Backbone | MSE | Precision | Recall | AP "
        "| AP vs mean | P@0.5 | R@0.5 | Pairs | Step |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name, r in rows.items():
        baseline = r["model"] in BASELINE_LABELS
        label = BASELINE_LABELS.get(r["model"]) or LABELS.get(r["model"], r["model"])
        lines.append(
            f"| {name} | {label} | "
            f"{'yes' if r['model'] in MESSAGE_PASSING else '-'} | {r['backbone']} | "
            f"{_fmt(r['mse'], False)} | {_fmt(r['precision'])} | {_fmt(r['recall'])} | "
            f"{_fmt(r['ap'])} | {_verdict(r)} | {_fmt(r.get('precision@0.5'))} | "
            f"{_fmt(r.get('recall@0.5'))} | {r['pairs']} | {'-' if baseline else r['step']} |"
        )
    return "\n".join(lines) + "\n"


def seed_groups(configs: dict[str, PretrainConfig]) -> list[list[str]]:
    """Names of the runs whose settings differ in ``train.seed`` only, grouped in order; a
    seed already in a group (the same run twice, or a copy) starts another group.

    (Threads, device and the other `xmatch_train.config.NOT_SETTINGS` do not split a group.)
    """
    groups: list[list[str]] = []
    for name, cfg in configs.items():
        for group in groups:
            seeds = {configs[n].train.seed for n in group}
            same = set(changed_settings(cfg, to_dict(configs[group[0]]))) <= {"train.seed"}
            if same and cfg.train.seed not in seeds:  # a repeated seed is another group
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def _spread(values: list[float], pct: bool = True) -> str:
    """mean +- sample standard deviation (ddof 1)."""
    a = np.asarray(values, dtype=float) * (100 if pct else 1)
    fmt = "{:.1f}" if pct else "{:.2e}"
    return f"{fmt.format(a.mean())} ± {fmt.format(a.std(ddof=1))}"


def seeds_markdown(rows: dict[str, dict], groups: list[list[str]]) -> str:
    """Mean +- std over the seeds of each group of two or more runs ('' when there is none);
    the AP gain is taken per run against that run's own mean-matrix baseline."""
    many = [g for g in groups if len(g) > 1]
    if not many:
        return ""
    lines = [
        "Over seeds (mean ± standard deviation, ddof 1):",
        "",
        "| Runs | Attention model | Seeds | MSE | Precision | Recall | AP | AP vs mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in many:
        rs = [rows[n] for n in group]
        gains = [r["ap"] - r["mean_ap"] for r in rs]
        lines.append(
            f"| {', '.join(group)} | {LABELS.get(rs[0]['model'], rs[0]['model'])} | "
            f"{', '.join(str(r['seed']) for r in rs)} | {_spread([r['mse'] for r in rs], False)} | "
            f"{_spread([r['precision'] for r in rs])} | {_spread([r['recall'] for r in rs])} | "
            f"{_spread([r['ap'] for r in rs])} | {_spread(gains)} |"
        )
    return "\n".join(lines) + "\n"


def _check_store(metas: list[StoreMeta], run_dir: Path, mean: np.ndarray, definition: str):
    """The stores must hold the run's ground-truth definition and patch grid."""
    for m in metas:
        if m.corr_definition != definition:
            raise StoreError(
                f"{m.path}: '{m.corr_definition}' correspondences, but {run_dir} was trained on "
                f"'{definition}' ones; build the store with corr_definition: {definition}"
            )
        if m.n_patches != mean.shape[0]:
            raise StoreError(
                f"{m.path}: patch grid {m.grid} ({m.n_patches} patches per view), but {run_dir} "
                f"was trained on {mean.shape[0]} patches per view"
            )


def _check_grid(first: tuple[dict, torch.Tensor], metas, run_dir: Path, cfg) -> None:
    """The run's model must predict the store's patch grid at the store's image size."""
    batch, pred = first
    if tuple(pred.shape) == tuple(batch["corr_0to1"].shape):
        return
    m = metas[int(batch["store"][0])]
    side = math.isqrt(int(pred.shape[-1]))
    size = cfg.data.image_size
    seen = f"{size} px (data.image_size)" if size else f"{m.image_shape[0]} px"
    raise StoreError(
        f"{m.path}: {m.image_shape[0]}x{m.image_shape[1]} px views with a "
        f"{m.grid[0]}x{m.grid[1]} patch grid, but {run_dir}'s model sees them at {seen} as a "
        f"{side}x{side} token grid (trained on {', '.join(cfg.data.stores)}): evaluate on a "
        "store built with the training store's size= and patch= (drrgen build key=value)"
    )


def _same_numbers(a: dict, b: dict) -> bool:
    """Two baseline rows with the same scores on the same pairs (runs sharing a split)."""
    keys = ("mse", "ap", "precision", "recall", "pairs")
    return json.dumps([a.get(k) for k in keys]) == json.dumps([b.get(k) for k in keys])


def _unique_name(run_dir: Path, taken: dict) -> str:
    name = run_dir.name or str(run_dir)
    return name if name not in taken else str(run_dir)


RENDERS = ("run", "plain", "realistic")


def eval_rendering(cfg: PretrainConfig, render: str, seed: int) -> XrayConfig:
    """The `XrayConfig` of ``xmatch eval --render`` (`RENDERS`) for a run configured as `cfg`."""
    if render == "run":
        return cfg.data.xray
    if render == "plain":
        return XrayConfig()
    if render == "realistic":
        return XrayConfig(enabled=True, render_seed=seed)
    raise ValueError(f"--render {render!r}: choose one of {', '.join(RENDERS)}")


def evaluate_runs(
    stores: list[str],
    runs: list[Path],
    out: Path,
    *,
    split: str = "auto",
    checkpoint: str = "best",
    batch_size: int = 16,
    max_batches: int | None = None,
    figures: int = 4,
    workers: int = 2,
    allow_incomplete: bool = False,
    render: str = "run",
    render_seed: int = 0,
) -> str:
    """Evaluate each run on `stores`; write ``table.md``, ``metrics.json`` and figures to `out`.

    `render` picks how the test pairs' line integrals become images: ``run`` as each run
    was configured (``data.xray``), ``plain`` the display transform without realism,
    ``realistic`` the default realistic renderer (`XrayConfig` defaults, enabled) with
    `render_seed`: the same fixed renderings for every run.

    Returns:
        The Markdown table.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metas = [read_meta(s, allow_incomplete=allow_incomplete) for s in stores]
    rt = dist.setup("auto", "auto")
    rows: dict[str, dict] = {}
    logs: dict[str, list[dict]] = {}
    configs: dict[str, PretrainConfig] = {}
    for run_dir in map(Path, runs):
        name = _unique_name(run_dir, rows)
        cfg, model, step = _load_run(run_dir, checkpoint, rt)
        mean, definition = load_train_mean(run_dir)
        _check_store(metas, run_dir, mean, definition)
        configs[name] = cfg
        stream = _test_stream(metas, run_dir, cfg, split, batch_size, workers)
        transform = BatchTransform(
            cfg.data.display, cfg.data.image_size, eval_rendering(cfg, render, render_seed)
        )
        scored = _score(model, stream, transform, mean, cfg, rt, run_dir, name, out, max_batches,
                        figures)  # fmt: skip
        common = dict(run=str(run_dir), split=split, stores=list(stores))
        _add_rows(rows, name, cfg, step, *scored, common)
        if RunDir(run_dir).log.is_file():
            logs[name] = read_log(RunDir(run_dir).log)
    return _write_outputs(out, rows, configs, logs)


def _test_stream(metas, run_dir: Path, cfg: PretrainConfig, split: str, batch_size, workers):
    """The run's `split` pairs of the stores, in a fixed order."""
    keys = eval_keys(metas, run_dir, split)
    masks = [sample_mask(m, keys) for m in metas]
    if not any(m.any() for m in masks):
        raise ValueError(
            f"{run_dir}: no samples of split {split!r} in {[m.path for m in metas]}; "
            "use --split all to evaluate on every volume"
        )
    options = StreamOptions(
        batch_size=batch_size, seed=0, train=False, mode="all", buffer=cfg.data.buffer,
        shuffle=True,
    )  # fmt: skip
    return PairStream(metas, masks, options, num_workers=workers)


def _score(model, stream, transform, mean, cfg, rt, run_dir, name, out, max_batches, figures):
    """The model's metrics and the no-image baselines' on every pair of `stream`; draws the
    first `figures` pairs. Returns (model metrics, {baseline: metrics})."""
    metrics = CorrespondenceMetrics(cfg.metrics)
    base = BaselineMetrics(mean, cfg.metrics)
    metas = stream.metas
    total = stream.batches_per_epoch(0)
    if max_batches is not None:
        total = min(total, max_batches)
    store_paths = [m.path for m in metas]
    predictions = predict(model, make_loader(stream), rt, transform, max_batches, store_paths)
    first = next(predictions, None)  # checked before the progress bar starts
    if first is not None:
        _check_grid(first, metas, run_dir, cfg)
    batches = tqdm(
        itertools.chain([first] if first is not None else [], predictions),
        total=total,
        desc=f"eval {name}",
        dynamic_ncols=True,
    )
    shown = 0
    for batch, pred in batches:
        metrics.update(pred, batch["corr_0to1"])
        base.update(batch["corr_0to1"])
        for b in range(min(figures - shown, pred.shape[0])):
            _draw(batch, pred, b, stream.grid, out / name / f"sample_{shown}.png", cfg, name)
            shown += 1
    return metrics.compute(), base.compute()


def _draw(batch: dict, pred, b: int, grid, path: Path, cfg: PretrainConfig, name: str) -> None:
    """Figure of pair `b` of a batch: both views, the true and the predicted C."""
    plot_pair(
        batch["view0"][b, 0].cpu().numpy(),
        batch["view1"][b, 0].cpu().numpy(),
        batch["corr_0to1"][b].cpu().numpy(),
        pred[b].cpu().numpy(),
        grid,
        path,
        cfg.metrics.gt_threshold,
        f"{name}: store {int(batch['store'][b])} sample {int(batch['index'][b])} "
        f"views {batch['pair'][b].tolist()} (CT {int(batch['volume_id'][b])})",
    )


def _add_rows(rows: dict, name, cfg, step, scores: dict, baselines: dict, common: dict) -> None:
    """The run's row and its baselines' rows (a baseline equal to one already listed once)."""
    rows[name] = dict(
        scores,
        model=cfg.model.name,
        backbone=cfg.model.backbone if cfg.model.name != "vit_s" else "ViT-S",
        step=step,
        seed=cfg.train.seed,
        mean_ap=baselines["mean"]["ap"],
        **common,
    )
    for kind, values in baselines.items():
        row = dict(values, model=kind, backbone="-", step=None, **common)
        previous = [r for r in rows.values() if r["model"] == kind]
        if not any(_same_numbers(row, r) for r in previous):
            rows[f"{kind} baseline ({name})"] = row


def _write_outputs(out: Path, rows: dict, configs: dict, logs: dict) -> str:
    """``table.md`` (with the seed table), ``metrics.json`` and the curves; returns the table."""
    if logs:
        plot_curves(logs, out / "curves.png")
    table = markdown_table(rows)
    over_seeds = seeds_markdown(rows, seed_groups(configs))
    table += f"\n{over_seeds}" if over_seeds else ""
    (out / "table.md").write_text(table, encoding="utf-8")
    clean = {
        n: {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for n, r in rows.items()
    }
    (out / "metrics.json").write_text(json.dumps(clean, indent=1), encoding="utf-8")
    return table
