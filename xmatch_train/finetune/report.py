"""`xmatch eval` on fine-tuning runs: study-level metrics and a Table-3-like Markdown table.

Every run is scored on its own dataset split (by default ``test``: MURA's official valid
split, or the synthetic dataset's test volumes) with its best checkpoint and the fixed view
pair of each study. Runs that share a configuration row (fusion, correspondence pretraining,
attention guidance) but differ in seed are aggregated as mean +/- standard deviation (ddof 1;
0 for one run). Writes ``table.md``, ``metrics.json`` (per row and per run), ``curves.png``
(training loss and validation AUC of every run beside chance) and, per run,
``<run>/predictions.csv`` (study id, label, probability) to the output folder.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import yaml

from xmatch_train.config import load_config
from xmatch_train.finetune.config import FinetuneConfig
from xmatch_train.finetune.dataset import StudyDataset
from xmatch_train.finetune.figures import plot_finetune_curves
from xmatch_train.finetune.guidance import CorrespondenceGuide
from xmatch_train.finetune.studies import SPLITS
from xmatch_train.finetune.task import (
    apply_split,
    build_classifier,
    guide_source,
    load_studies,
    predict,
    scores,
)
from xmatch_train.metrics import paired_auc_bootstrap
from xmatch_train.train import dist
from xmatch_train.train.checkpoint import load_checkpoint
from xmatch_train.train.logger import read_log
from xmatch_train.train.rundir import RunDir

METRICS = ("accuracy", "precision", "recall", "kappa", "auc")
# The paper's Table-3 rows, top to bottom: name -> (fusion, correspondence-pretrained, guided).
ROW_KEYS = {
    "single": ("single", False, False),
    "late": ("late", False, False),
    "early": ("early", False, False),
    "early_pretrain": ("early", True, False),
    "early_pretrain_guidance": ("early", True, True),
}
ROW_ORDER = list(ROW_KEYS.values())
# Paired comparisons written under the table: (row A, row B), A - B.
COMPARISONS = (
    ("early_pretrain_guidance", "early"),
    ("early_pretrain", "early"),
    ("early_pretrain_guidance", "early_pretrain"),
    ("early", "single"),
    ("late", "single"),
)


def is_finetune_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a fine-tuning run (its config has a ``guidance`` section)."""
    path = RunDir(run_dir).config
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "guidance" in data and "select_metric" in data


def row_key(cfg: FinetuneConfig) -> tuple[str, bool, bool]:
    """(fusion, correspondence-pretrained, guided): the Table-3 row of a run."""
    return cfg.model.fusion, cfg.model.init_from is not None, cfg.guidance.enabled


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    checkpoint: str = "best",
    batch_size: int = 16,
    workers: int = 2,
    rt: dist.Runtime | None = None,
) -> tuple[FinetuneConfig, dict, list[tuple[str, int, float]]]:
    """Score one run on `split`.

    Returns:
        The run's config, its metrics (plus ``step``, ``run``, ``split``) and
        (study id, label, probability) per study.
    """
    rt = rt or dist.setup("auto", "auto")
    run = RunDir(run_dir)
    cfg = load_config(run.config, cls=FinetuneConfig)
    ckpt = load_checkpoint(run.find_checkpoint(checkpoint), map_location="cpu")
    model = build_classifier(cfg, pretrained=False)  # every weight is in the checkpoint
    model.load_state_dict(ckpt["model"])
    model.to(rt.device)
    studies = apply_split(load_studies(cfg), run.split)
    chosen = studies if split == "all" else [s for s in studies if s.split == split]
    if not chosen:
        raise ValueError(f"{run_dir}: no studies in split {split!r} of {cfg.data.root}")
    dataset = StudyDataset(chosen, cfg.data.image_size, train=False)
    guide = None
    if guide_source(cfg) is not None:
        grid = (cfg.data.image_size // cfg.model.patch_size,) * 2
        guide = CorrespondenceGuide.from_run(guide_source(cfg), grid, cfg.guidance.checkpoint)
        guide.to(rt.device)
    labels, probs, logits = predict(
        model, dataset, rt, guide, batch_size, workers, progress=f"eval {run_dir.name}"
    )
    metrics = dict(
        scores(labels, probs, logits, cfg.threshold),
        step=int(ckpt.get("step", -1)),
        run=str(run_dir),
        split=split,
    )
    if model.alpha is not None:
        metrics["alpha"] = [round(float(a), 4) for a in model.alpha.detach().cpu()]
    rows = [(s.study_id, s.label, float(p)) for s, p in zip(chosen, probs, strict=True)]
    return cfg, metrics, rows


def aggregate(runs: list[dict]) -> dict:
    """Mean and standard deviation (ddof 1; 0 for one run) of each metric over runs."""
    out: dict = {"runs": len(runs)}
    for name in (*METRICS, "loss"):
        values = np.array([r[name] for r in runs], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else math.nan
        out[f"{name}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out


def _cell(mean: float, std: float, pct: bool) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if pct:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{mean:.2f} ± {std:.2f}"


def markdown_table(rows: dict[tuple, dict], title: str = "") -> str:
    """Table 3's layout: pretraining, guidance, fusion, accuracy / precision / recall (%),
    kappa, plus AUC (%) and the number of runs (seeds)."""
    head = (
        "| Correspondence pretraining | Attention guidance | Fusion | Accuracy | Precision | "
        "Recall | Kappa | AUC | Seeds |"
    )
    lines = ([f"**{title}**", ""] if title else []) + [head, "|---" * 9 + "|"]
    order = [k for k in ROW_ORDER if k in rows] + [k for k in rows if k not in ROW_ORDER]
    for key in order:
        fusion, pre, guided = key
        r = rows[key]
        cells = [_cell(r[m], r[f"{m}_std"], m != "kappa") for m in METRICS]
        lines.append(
            f"| {'✓' if pre else '–'} | {'✓' if guided else '–'} | {fusion.capitalize()} | "
            + " | ".join(cells)
            + f" | {r['runs']} |"
        )
    return "\n".join(lines) + "\n"


def paired_comparisons(
    predictions: dict[tuple, list[list[tuple[str, int, float]]]], n_boot: int = 2000
) -> list[dict]:
    """`COMPARISONS` of the rows present, each a paired bootstrap of the seed-mean test AUC
    difference over the same studies (`xmatch_train.metrics.paired_auc_bootstrap`).

    Args:
        predictions: row key -> per run, (study id, label, probability) per study.
    """
    out = []
    for name_a, name_b in COMPARISONS:
        a, b = predictions.get(ROW_KEYS[name_a]), predictions.get(ROW_KEYS[name_b])
        if not a or not b:
            continue
        ids = [sid for sid, _, _ in a[0]]
        if any([sid for sid, _, _ in run] != ids for run in a + b):
            continue  # runs on other study lists (other data) cannot be paired
        labels = np.array([label for _, label, _ in a[0]])
        if labels.min() == labels.max():
            continue  # AUC needs both classes
        probs_a = np.array([[p for _, _, p in run] for run in a])
        probs_b = np.array([[p for _, _, p in run] for run in b])
        out.append(
            dict(a=name_a, b=name_b, **paired_auc_bootstrap(labels, probs_a, probs_b, n_boot))
        )
    return out


def comparisons_markdown(
    comparisons: list[dict], alphas: dict[str, list[float]], split: str = "test"
) -> str:
    """The paired comparisons and the learnt guidance alphas, as Markdown under the table."""
    lines = []
    if comparisons:
        lines += [
            "",
            f"Paired comparisons on the same {split} studies (AUC difference of the seed means, "
            "percentile 95 % CI from a bootstrap over studies, stratified by label):",
            "",
            "| Rows (A - B) | AUC A - B | 95 % CI | P(A - B <= 0) |",
            "|---|---|---|---|",
        ]
        for c in comparisons:
            lines.append(
                f"| {c['a']} - {c['b']} | {100 * c['diff']:+.1f} | "
                f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | {c['p_le_0']:.3f} |"
            )
    if alphas:
        lines += ["", "Learnt guidance alpha per layer (first to last):", ""]
        for run, values in alphas.items():
            lines.append(f"* {run}: " + ", ".join(f"{v:.3f}" for v in values))
    return "\n".join(lines) + ("\n" if lines else "")


def evaluate_finetune_runs(
    runs: list[Path],
    out: Path,
    *,
    split: str = "test",
    checkpoint: str = "best",
    batch_size: int = 16,
    workers: int = 2,
) -> str:
    """Evaluate fine-tuning runs; write ``table.md``, ``metrics.json`` and predictions to `out`.

    Args:
        runs: run directories (several seeds of a row are averaged).
        out: output folder.
        split: ``test`` (default), ``val``, ``train`` or ``all``.
        checkpoint: ``best`` or ``last``.
        batch_size, workers: evaluation batch size and DataLoader workers.

    Returns:
        The Markdown table.
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rt = dist.setup("auto", "auto")
    per_run: dict[str, dict] = {}
    grouped: dict[tuple, list[dict]] = {}
    predicted: dict[tuple, list] = {}
    alphas: dict[str, list[float]] = {}
    sources = set()
    for run_dir in map(Path, runs):
        cfg, metrics, predictions = evaluate_run(
            run_dir, split, checkpoint, batch_size, workers, rt
        )
        name = str(run_dir)
        metrics.update(seed=cfg.train.seed, row=list(row_key(cfg)))
        per_run[name] = metrics
        grouped.setdefault(row_key(cfg), []).append(metrics)
        predicted.setdefault(row_key(cfg), []).append(predictions)
        if "alpha" in metrics:
            alphas[name] = metrics["alpha"]
        sources.add(f"{cfg.data.format}:{cfg.data.root}")
        folder = out / (run_dir.parent.name + "_" + run_dir.name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["study_id", "label", "probability"])
            writer.writerows(predictions)
    rows = {key: aggregate(items) for key, items in grouped.items()}
    n = sum(len(v) for v in grouped.values())
    title = f"{', '.join(sorted(sources))}, split {split}, {n} run(s)"
    comparisons = paired_comparisons(predicted)
    table = markdown_table(rows, title) + comparisons_markdown(comparisons, alphas, split)
    (out / "table.md").write_text(table, encoding="utf-8")
    names = {key: name for name, key in ROW_KEYS.items()}
    logs = {
        name: (names.get(tuple(m["row"]), str(m["row"])), read_log(RunDir(name).log))
        for name, m in per_run.items()
        if RunDir(name).log.is_file()
    }
    plot_finetune_curves(logs, out / "curves.png")

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    record = dict(
        split=split,
        checkpoint=checkpoint,
        rows=[dict(fusion=k[0], pretrained=k[1], guidance=k[2], **v) for k, v in rows.items()],
        comparisons=comparisons,
        runs=per_run,
    )
    (out / "metrics.json").write_text(json.dumps(clean(record), indent=1), encoding="utf-8")
    return table
