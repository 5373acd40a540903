"""The whole Table-3 comparison: every row x seed fine-tuned, then evaluated together.

Rows (the paper's Table 3, top to bottom):
    ``single``                   single view, random init (or ``model.pretrained_file``);
    ``late``                     late fusion, same init;
    ``early``                    early fusion, same init;
    ``early_pretrain``           early fusion, encoder from the correspondence pretraining
                                 (``table.pretrain_run``), lr ``table.pretrained_lr``;
    ``early_pretrain_guidance``  the same plus correspondence-guided attention with the
                                 pretraining's predicted C.
Runs go to ``run_dir/<row>/seed<k>``; a finished run (``summary.json`` with ``done``) is kept
and an interrupted one resumes, so rerunning the command continues where it stopped; a run
started with other settings (`changed_keys`; where or how fast a run goes,
`xmatch_train.config.NOT_SETTINGS`, does not count) makes the command refuse: a table never
mixes them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from xmatch_train.config import changed_settings
from xmatch_train.finetune.config import FinetuneConfig
from xmatch_train.finetune.report import ROW_KEYS, evaluate_finetune_runs
from xmatch_train.finetune.task import finetune, resolve_sizes
from xmatch_train.train.rundir import RunDir

ROWS = tuple(ROW_KEYS)


def row_config(base: FinetuneConfig, row: str, seed: int) -> FinetuneConfig:
    """The config of one row and seed (run_dir ``base.run_dir/<row>/seed<seed>``)."""
    if row not in ROWS:
        raise ValueError(f"unknown Table-3 row {row!r}; choose from {ROWS}")
    pretrained = "pretrain" in row
    if pretrained and not base.table.pretrain_run:
        raise ValueError(f"row {row!r} needs table.pretrain_run (a vit_s correspondence run)")
    model = replace(
        base.model,
        fusion="early" if row.startswith("early") else row,
        init_from=base.table.pretrain_run if pretrained else None,
    )
    guidance = replace(base.guidance, enabled=row.endswith("guidance"))
    optim = replace(base.optim, lr=base.table.pretrained_lr) if pretrained else base.optim
    return replace(
        base,
        run_dir=str(Path(base.run_dir) / row / f"seed{seed}"),
        model=model,
        guidance=guidance,
        optim=optim,
        train=replace(base.train, seed=seed),
    )


def is_done(run_dir: str | Path) -> bool:
    """True when the run finished (its ``summary.json`` says ``done``)."""
    try:
        return bool(json.loads(RunDir(run_dir).summary.read_text(encoding="utf-8")).get("done"))
    except (OSError, json.JSONDecodeError):
        return False


def changed_keys(cfg: FinetuneConfig) -> list[str]:
    """Dotted keys where the ``config.yaml`` saved in ``cfg.run_dir`` differs from `cfg`
    (`changed_settings`: keys of `NOT_SETTINGS` aside); [] when no run has been started there."""
    path = RunDir(cfg.run_dir).config
    if not path.is_file():
        return []
    return list(changed_settings(cfg, yaml.safe_load(path.read_text(encoding="utf-8"))))


def run_table(
    base: FinetuneConfig,
    rows: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    out: str | Path | None = None,
    workers: int | None = None,
) -> str:
    """Fine-tune every row x seed (skipping finished runs), then evaluate them together.

    Args:
        base: the dataset's config (``pipelines/finetune_<dataset>.yaml``).
        rows, seeds: default ``base.table.rows`` / ``base.table.seeds``.
        out: table folder (default ``base.table.out`` or ``base.run_dir/table``).
        workers: evaluation DataLoader workers (default ``base.data.num_workers``).

    Returns:
        The Markdown table (also in ``out/table.md``, metrics in ``out/metrics.json``).
    """
    rows = tuple(rows or base.table.rows)
    seeds = tuple(base.table.seeds if seeds is None else seeds)
    # Sizes made explicit (as each run saves them) before comparing with runs on disk.
    configs = [resolve_sizes(row_config(base, row, seed)) for row in rows for seed in seeds]
    for i, cfg in enumerate(configs, start=1):
        if changed := changed_keys(cfg):  # finished or interrupted: never resumed or mixed
            raise ValueError(
                f"{cfg.run_dir}: started with other settings ({', '.join(changed)}); "
                "choose another run_dir=... (or delete that run) to build a new table"
            )
        if is_done(cfg.run_dir):
            print(f"[{i}/{len(configs)}] {cfg.run_dir}: done, kept")
            continue
        print(f"[{i}/{len(configs)}] {cfg.run_dir}")
        finetune(cfg)
    out = Path(out or base.table.out or Path(base.run_dir) / "table")
    workers = base.data.num_workers if workers is None else workers
    return evaluate_finetune_runs(
        [Path(c.run_dir) for c in configs], out, batch_size=base.data.batch_size, workers=workers
    )
