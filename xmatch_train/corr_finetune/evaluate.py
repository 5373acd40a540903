"""``xmatch eval --annotations FILE --run RUN ...``: the paper's Table 2 on annotated pairs.

Each run (a correspondence run of ``xmatch pretrain``: zero-shot; or of ``xmatch
finetune-corr``) predicts the pairs of the split, prepared as ``xmatch match`` prepares them,
and is scored over the annotated entries only (`scoring`). The split: a fine-tuning run's own
(``split.json``); for a pretraining run, the file's splits, else the same seeded 60/10/30 split
by pair ``xmatch finetune-corr`` makes by default (``--split-seed``). Runs of one row (same
settings but the seed) are averaged (mean +- std over seeds); the chance baseline (AP = the
positive fraction) and the training mean matrix (when a run has one) are scored on the same
entries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from drrgen.errors import UserError
from xmatch_train.corr_finetune.annotations import read_annotations
from xmatch_train.corr_finetune.config import CorrFinetuneConfig
from xmatch_train.corr_finetune.data import load_pairs, split_pairs
from xmatch_train.corr_finetune.scoring import chance_scores, predict_pairs, score_entries
from xmatch_train.metrics import MetricConfig
from xmatch_train.train.rundir import RunDir

# The paper's Table 2 (347 real pairs; precision, recall, AP in %), for reference only.
PAPER_TABLE2 = (
    ("Zero shot", "Res50", "LoFTR module", 32.5, 2.7, 9.4),
    ("Zero shot", "Res50", "LoFTR* module", 28.3, 26.3, 15.9),
    ("Zero shot", "DinoV2-G", "-", 3.0, 15.2, 1.7),
    ("Fine-tuning", "Res50", "LoFTR* module", 36.8, 18.0, 16.1),
    ("Fine-tuning", "DinoV2-G", "Multi Layer Perceptron", 55.23, 51.6, 42.2),
    ("Pre-train + Fine-tuning", "Res50", "Standard Transformer", 72.3, 87.1, 83.8),
)


def is_corr_finetune_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds an ``xmatch finetune-corr`` run (config with
    ``data.annotations``)."""
    try:
        data = yaml.safe_load(RunDir(run_dir).config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "annotations" in (data.get("data") or {})


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"):
    """A `xmatch_train.match.Matcher` of a pretraining or a finetune-corr run."""
    from xmatch_train.match.matcher import Matcher, _train_mean, load_matcher

    if not is_corr_finetune_run(run_dir):
        return load_matcher(run_dir, checkpoint, device)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"--checkpoint {checkpoint}: expected best or last")
    from xmatch_train.config import load_config
    from xmatch_train.models import model_from_checkpoint
    from xmatch_train.train import dist
    from xmatch_train.train.checkpoint import load_checkpoint

    run = RunDir(run_dir)
    cfg = load_config(run.config, cls=CorrFinetuneConfig)
    path = run.find_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    rt = dist.setup(device, "fp32")
    model = model_from_checkpoint(cfg.model, ckpt["model"], path).to(rt.device).eval()
    size = int(cfg.data.image_size)
    from xmatch_train.corr_finetune.task import token_grid

    return Matcher(
        model, cfg, Path(run_dir), path, int(ckpt.get("step", -1)), size,
        token_grid(model, size), rt.device, _train_mean(Path(run_dir)),
    )  # fmt: skip


def run_split(run_dir: Path, pairs, split: str, split_seed: int) -> list[str]:
    """The pair ids of `split` for `run_dir` (module docstring)."""
    if split == "all":
        return [p.id for p in pairs]
    path = RunDir(run_dir).split
    if is_corr_finetune_run(run_dir) and path.is_file():
        ids = json.loads(path.read_text(encoding="utf-8"))["pairs"][split]
        missing = sorted(set(ids) - {p.id for p in pairs})
        if missing:
            raise UserError(
                f"{run_dir}: its {split} pairs ({', '.join(missing[:3])}, ...) are not in the "
                "annotation file; evaluate on the file it was trained with"
            )
        return ids
    return split_pairs(pairs, 0.1, 0.3, split_seed)[split]


@dataclass
class RunScore:
    """One run's scores and the baselines on the same entries."""

    run: Path
    row: str
    seed: int
    metrics: dict
    val_ap: float  # the fine-tuning's best validation AP (model selection), NaN zero-shot
    chance: dict
    mean: dict | None
    ids: list[str]
    cfg: object = None  # the run's config: runs that differ in more than the seed get own rows


def row_name(run_dir: Path, matcher) -> str:
    """The Table-2 row of a run."""
    if not is_corr_finetune_run(run_dir):
        return f"zero-shot (pretrained {matcher.cfg.model.name})"
    how = f"{matcher.cfg.model.name}, lr {matcher.cfg.optim.lr:g}"
    if matcher.cfg.init_from is None:
        return f"fine-tuned from scratch ({how})"
    return f"pretrained + fine-tuned ({how})"


def score_run(
    run_dir: Path, annotations: Path, split: str, checkpoint: str, split_seed: int, device: str
) -> RunScore:
    """Score one run on the `split` pairs of `annotations`."""
    pairs = read_annotations(annotations)
    matcher = load_run(run_dir, checkpoint, device)
    ids = set(run_split(run_dir, pairs, split, split_seed))
    chosen = [p for p in pairs if p.id in ids]
    if not chosen:
        raise UserError(f"{annotations}: no {split} pairs for {run_dir}")
    fit = getattr(matcher.cfg.data, "fit", "pad")
    borders = getattr(matcher.cfg.data, "borders", "auto")
    data = load_pairs(
        chosen, matcher.image_size, matcher.display, matcher.grid, fit, borders
    )  # fmt: skip
    pred = predict_pairs(matcher.model, data, matcher.device)  # (P, N, N)
    metrics = getattr(matcher.cfg, "metrics", None)  # the run's thresholds, as in validation
    mc = (
        MetricConfig(extra_thresholds=())
        if metrics is None
        else replace(metrics, extra_thresholds=())
    )
    mean = None if matcher.train_mean is None else score_entries(matcher.train_mean, data, mc)
    seed = int(getattr(matcher.cfg.train, "seed", 0))
    return RunScore(
        run_dir, row_name(run_dir, matcher), seed, score_entries(pred, data, mc),
        _best_val(run_dir), chance_scores(data), mean, sorted(ids), matcher.cfg,
    )  # fmt: skip


def _best_val(run_dir: Path) -> float:
    """A finetune-corr run's best validation AP (``summary.json``), NaN otherwise."""
    path = RunDir(run_dir).summary
    if not is_corr_finetune_run(run_dir) or not path.is_file():
        return math.nan
    best = json.loads(path.read_text(encoding="utf-8")).get("best_val")
    return math.nan if best is None else float(best)


def _pct(values: list[float]) -> str:
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64) * 100
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def _rows(scores: list[RunScore]) -> list[tuple[str, list[RunScore]]]:
    """Runs grouped as seeds of one row only when their settings differ in ``train.seed``
    alone (`seed_groups`); a row label shared by several groups names each group's first run."""
    from xmatch_train.pretrain.report import seed_groups

    configs = {str(i): s.cfg for i, s in enumerate(scores)}
    groups = [[scores[int(i)] for i in g] for g in seed_groups(configs)]
    labels = [g[0].row for g in groups]
    return [
        (label if labels.count(label) == 1 else f"{label} [{g[0].run.name}]", g)
        for label, g in zip(labels, groups, strict=True)
    ]


def table(scores: list[RunScore], reference: bool = False) -> str:
    """Markdown: one line per row (mean ± std over its seeds; test metrics, and the best
    validation AP that selected each fine-tuned checkpoint), the baselines, and with
    `reference` the paper's Table 2."""
    lines = [
        "| row | seeds | precision @0.2 | recall @0.2 | AP | pairs | entries | val AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[str, list[RunScore]] = {}
    for name, group in _rows(scores):
        rows[name] = group
    for name, group in rows.items():
        m = [g.metrics for g in group]
        lines.append(
            f"| {name} | {len(group)} | {_pct([x['precision'] for x in m])} | "
            f"{_pct([x['recall'] for x in m])} | {_pct([x['ap'] for x in m])} | "
            f"{m[0]['pairs']} | {m[0]['entries']} | {_pct([g.val_ap for g in group])} |"
        )
    first = scores[0]
    c = first.chance
    lines.append(
        f"| chance (constant score; AP = positive fraction) | - | {_pct([c['precision']])} | "
        f"{_pct([c['recall']])} | {_pct([c['ap']])} | {first.metrics['pairs']} | "
        f"{first.metrics['entries']} | - |"
    )
    with_mean = [s for s in scores if s.mean is not None]
    if with_mean:
        b = with_mean[0].mean
        lines.append(
            f"| training mean matrix of {with_mean[0].run.name} (no image) | - | "
            f"{_pct([b['precision']])} | {_pct([b['recall']])} | {_pct([b['ap']])} | "
            f"{b['pairs']} | {b['entries']} | - |"
        )
    if len({tuple(s.ids) for s in scores}) > 1:
        lines.append("\nnote: the runs were scored on different pairs (their own splits).")
    if reference:
        lines += [
            "",
            "The paper's Table 2 (347 real pairs, 3 positives + 100 negatives each), for "
            "reference:",
            "",
            "| method | backbone | model | precision | recall | AP |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {p} | {r} | {ap} |" for a, b, c, p, r, ap in PAPER_TABLE2]
    return "\n".join(lines) + "\n"


def evaluate_annotation_runs(
    annotations: str | Path,
    runs: list[Path],
    out: Path,
    split: str = "test",
    checkpoint: str = "best",
    split_seed: int = 0,
    device: str = "auto",
    reference: bool = False,
) -> str:
    """Score every run, write ``table.md`` and ``metrics.json`` into `out`; returns the table."""
    if split not in ("train", "val", "test", "all"):
        raise UserError(f"--split {split}: expected test, val, train or all with --annotations")
    annotations = Path(annotations)
    scores = [score_run(r, annotations, split, checkpoint, split_seed, device) for r in runs]
    text = table(scores, reference)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text, encoding="utf-8")
    record = [
        dict(run=str(s.run), row=s.row, seed=s.seed, metrics=s.metrics, best_val_ap=s.val_ap,
             chance=s.chance, mean_matrix=s.mean, pairs=s.ids)
        for s in scores
    ]  # fmt: skip
    (out / "metrics.json").write_text(
        json.dumps(dict(annotations=str(annotations), split=split, runs=record), indent=1),
        encoding="utf-8",
    )
    return text
