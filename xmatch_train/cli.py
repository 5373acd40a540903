"""The ``xmatch`` command line: ``xmatch pretrain``, ``xmatch finetune``, ``xmatch finetune-table``,
``xmatch finetune-corr``, ``xmatch make-standin``, ``xmatch eval`` and ``xmatch match``.

Heavy imports (torch, timm, zarr) happen inside the commands, so ``xmatch --help`` is fast.
Errors go through the error path shared with `drrgen` (`drrgen.clikit`): a user's mistake is
one line ``error: <input>: <reason>`` and exit code 2, a bug keeps its traceback.
"""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from pathlib import Path

import typer

from drrgen.clikit import make_app, out_folder
from drrgen.errors import UserError

app = make_app(
    "xmatch", "Train and evaluate multi-view X-ray correspondence models on drrgen stores."
)


@contextmanager
def _resumable(args: list[str], overrides: list[str] | None):
    """Ctrl-C in a training command: no traceback, one line saying where the run stands and
    the command that resumes it (`args`, the command and its options, plus `overrides`);
    exit 130. XMATCH_DEBUG=1 shows the traceback instead."""
    try:
        yield
    except KeyboardInterrupt as err:
        if os.environ.get("XMATCH_DEBUG"):
            raise
        # train.resume=false started the run over; continuing it needs resume on
        again = [
            o if not o.startswith("train.resume=") else "train.resume=true" for o in overrides or []
        ]
        if os.environ.get("RANK", "0") == "0":  # under torchrun: once
            command = shlex.join(["xmatch", *args, *again])
            typer.echo(f"{str(err) or 'interrupted'}; resume with: {command}", err=True)
        raise typer.Exit(130) from None


@app.callback()
def _main() -> None:
    """Train and evaluate multi-view X-ray correspondence models on drrgen stores."""


@app.command()
def pretrain(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML config, e.g. pipelines/pretrain_cpu.yaml"
    ),
    overrides: list[str] = typer.Argument(
        None, help="dotted overrides, e.g. optim.lr=3e-4 model.name=cnn"
    ),
) -> None:
    """Pretrain a correspondence model (resumes from RUN_DIR/ckpt/last.pt when present;
    Ctrl-C prints the command that resumes it).

    Multi-GPU: ``torchrun --nproc_per_node 4 -m xmatch_train pretrain --config ...``.
    """
    from xmatch_train.config import load_config
    from xmatch_train.pretrain import pretrain as run

    with _resumable(["pretrain", "--config", str(config)], overrides):
        run_dir = run(load_config(config, overrides))
    typer.echo(f"run directory: {run_dir}")


@app.command("eval")
def eval_(
    store: list[str] = typer.Option(
        None, "--store", help="store(s) to evaluate correspondence runs on (not for fine-tuning)"
    ),
    run: list[Path] = typer.Option(..., "--run", help="run directory (repeat for several runs)"),
    out: Path = typer.Option(
        ..., "--out", help="output directory for table.md, metrics.json, figures"
    ),
    split: str = typer.Option(
        "auto",
        help="auto: CT volumes the run never trained or validated on (its test volumes "
        "for its own store, every volume for a store of new CTs); test, val, train or all",
    ),
    checkpoint: str = typer.Option("best", help="best or last"),
    batch_size: int = typer.Option(16, min=1, help="evaluation batch size"),
    max_batches: int = typer.Option(None, min=1, help="evaluate at most this many batches per run"),
    figures: int = typer.Option(4, min=0, help="sample figures per run"),
    workers: int = typer.Option(2, min=0, help="DataLoader workers"),
    allow_incomplete: bool = typer.Option(False, help="accept stores still being built"),
    annotations: Path = typer.Option(
        None,
        "--annotations",
        help="annotated pairs (JSON): score correspondence runs over the annotated entries "
        "only (Table 2; split auto = test)",
    ),
    split_seed: int = typer.Option(
        0, help="with --annotations: seed of the 60/10/30 pair split for runs without their own"
    ),
    paper: bool = typer.Option(
        False, "--paper/--no-paper", help="with --annotations: add the paper's Table 2 below"
    ),
    device: str = typer.Option("auto", help="with --annotations: auto, cpu or cuda"),
    render: str = typer.Option(
        "run",
        help="test images: run (as each run was trained), plain (no realism) or realistic "
        "(the default realistic X-ray rendering, data.xray, with --render-seed)",
    ),
    render_seed: int = typer.Option(0, help="seed of the realistic renderings (--render)"),
) -> None:
    """Evaluate trained runs; write table.md, metrics.json and figures to OUT.

    Correspondence runs are scored on --store (Table 1), or over the annotated entries of
    --annotations (Table 2: pretraining runs zero-shot, `xmatch finetune-corr` runs on their
    own test pairs); fine-tuning runs (`xmatch finetune`) on their own dataset's studies
    (Table 3; split auto = test, seeds of a row averaged).
    """
    from xmatch_train.finetune.report import evaluate_finetune_runs, is_finetune_run
    from xmatch_train.pretrain.report import evaluate_runs

    out_folder(out)
    if annotations is not None:
        from xmatch_train.corr_finetune import evaluate_annotation_runs

        if store:
            raise UserError("--annotations and --store: give one")
        table = evaluate_annotation_runs(
            annotations,
            run,
            out,
            split="test" if split == "auto" else split,
            checkpoint=checkpoint,
            split_seed=split_seed,
            device=device,
            reference=paper,
        )
        typer.echo(table)
        typer.echo(f"wrote {out / 'table.md'} and {out / 'metrics.json'}")
        return
    kinds = {is_finetune_run(r) for r in run}
    if kinds == {True}:
        table = evaluate_finetune_runs(
            run,
            out,
            split="test" if split == "auto" else split,
            checkpoint=checkpoint,
            batch_size=batch_size,
            workers=workers,
        )
        typer.echo(table)
        typer.echo(
            f"wrote {out / 'table.md'}, {out / 'metrics.json'} and the runs' "
            f"predictions.csv in {out}/"
        )
        return
    if len(kinds) > 1:
        raise UserError("--run: mix of fine-tuning and correspondence runs; evaluate apart")
    if not store:
        raise UserError("--store is required to evaluate correspondence runs")
    if render not in ("run", "plain", "realistic"):
        raise UserError(f"--render {render!r}: choose run, plain or realistic")
    table = evaluate_runs(
        store,
        run,
        out,
        split=split,
        checkpoint=checkpoint,
        batch_size=batch_size,
        max_batches=max_batches,
        figures=figures,
        workers=workers,
        allow_incomplete=allow_incomplete,
        render=render,
        render_seed=render_seed,
    )
    typer.echo(table)
    typer.echo(f"wrote {out / 'table.md'}, {out / 'metrics.json'} and figures in {out}/")


@app.command()
def finetune(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML config, e.g. pipelines/finetune_synthetic.yaml"
    ),
    overrides: list[str] = typer.Argument(
        None, help="dotted overrides, e.g. model.fusion=late train.seed=1"
    ),
) -> None:
    """Fine-tune the fracture classifier (one run; resumes from RUN_DIR/ckpt/last.pt; Ctrl-C
    prints the command that resumes it)."""
    from xmatch_train.config import load_config
    from xmatch_train.finetune import FinetuneConfig
    from xmatch_train.finetune import finetune as run

    with _resumable(["finetune", "--config", str(config)], overrides):
        run_dir = run(load_config(config, overrides, cls=FinetuneConfig))
    typer.echo(f"run directory: {run_dir}")


@app.command("finetune-corr")
def finetune_corr(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML config, e.g. pipelines/table2_finetune.yaml"
    ),
    overrides: list[str] = typer.Argument(
        None, help="dotted overrides, e.g. init_from=runs/pretrain_cpu/transformer optim.lr=1e-4"
    ),
) -> None:
    """Fine-tune a correspondence run on annotated pairs (the paper's Table 2 protocol): the
    loss over the annotated entries only, model selection on validation AP (resumes from
    RUN_DIR/ckpt/last.pt; Ctrl-C prints the command that resumes it)."""
    from xmatch_train.config import load_config
    from xmatch_train.corr_finetune import CorrFinetuneConfig
    from xmatch_train.corr_finetune import finetune_corr as run

    with _resumable(["finetune-corr", "--config", str(config)], overrides):
        run_dir = run(load_config(config, overrides, cls=CorrFinetuneConfig))
    typer.echo(f"run directory: {run_dir}")


@app.command("make-standin")
def make_standin(
    store: Path = typer.Option(..., "--store", help="a drrgen store of CTs never pretrained on"),
    out: Path = typer.Option(..., "--out", help="folder for images/ and annotations.json"),
    positives: int = typer.Option(3, min=1, help="positive point pairs per pair (C >= 0.2)"),
    negatives: int = typer.Option(100, min=0, help="negative point pairs per pair (C == 0)"),
    render: str = typer.Option(
        "realistic",
        help="realistic (the realistic X-ray renderer, data.xray defaults) or simple "
        "(Beer-Lambert, Poisson noise at --photons, log, window)",
    ),
    photons: float = typer.Option(2e4, min=1.0, help="with --render simple: photons per pixel"),
    seed: int = typer.Option(0, help="seed of the points and the noise"),
) -> None:
    """Write an offline stand-in for annotated real pairs: each store sample's two views as
    16-bit detector-like PNGs and points drawn from its true matrix (annotations.json)."""
    from xmatch_train.corr_finetune import StandinOptions
    from xmatch_train.corr_finetune import make_standin as run

    out_folder(out)
    options = StandinOptions(
        positives=positives, negatives=negatives, render=render, photons=photons, seed=seed
    )
    path, n, skipped = run(store, out, options)
    typer.echo(f"wrote {n} pairs ({skipped} samples skipped: too few positives) to {path}")


@app.command("finetune-table")
def finetune_table(
    config: Path = typer.Option(
        ..., "--config", "-c", help="YAML config, e.g. pipelines/finetune_synthetic.yaml"
    ),
    overrides: list[str] = typer.Argument(None, help="dotted overrides for every run"),
    seeds: str = typer.Option(None, help="comma-separated seeds (default: table.seeds)"),
    rows: str = typer.Option(None, help="comma-separated rows (default: table.rows)"),
    out: Path = typer.Option(None, "--out", help="table folder (default: table.out)"),
) -> None:
    """Run the whole Table-3 comparison (rows x seeds, finished runs kept), then evaluate."""
    from xmatch_train.config import load_config
    from xmatch_train.finetune import FinetuneConfig, run_table

    if out is not None:
        out_folder(out)
    args = ["finetune-table", "--config", str(config)]
    for name, value in (("--seeds", seeds), ("--rows", rows), ("--out", out)):
        args += [name, str(value)] if value is not None else []
    with _resumable(args, overrides):
        base = load_config(config, overrides, cls=FinetuneConfig)
        table = run_table(
            base,
            rows=tuple(r.strip() for r in rows.split(",")) if rows else None,
            seeds=_seeds(seeds),
            out=out,
        )
    typer.echo(table)


def _seeds(text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,1,2`` as integers."""
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--seeds {text}: expected comma-separated integers, e.g. 0,1,2") from None


@app.command()
def match(
    a: Path = typer.Argument(None, help="image A: PNG, JPEG, TIFF (8/16 bit) or DICOM CR/DX"),
    b: Path = typer.Argument(None, help="image B, the other view"),
    run: Path = typer.Option(
        ..., "--run", help="correspondence run (xmatch pretrain or finetune-corr)"
    ),
    out: Path = typer.Option(
        ..., "--out", help="output folder (one subfolder per pair with --pairs)"
    ),
    checkpoint: str = typer.Option("best", help="best or last"),
    pairs: Path = typer.Option(
        None,
        "--pairs",
        help="CSV with a header a,b[,name] (paths relative to the CSV): match each row",
    ),
    query: str = typer.Option(
        None, "--query", help="X,Y pixel of A (column, row): draw its heat map on B (query.png)"
    ),
    top_k: int = typer.Option(5, "--top-k", help="matches listed per patch of A in matches.json"),
    save_matrix: bool = typer.Option(False, "--save-matrix", help="also write matrix.npy (N x N)"),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="draw matches.png"),
    fit: str = typer.Option(
        "pad", help="non-square images: pad (keep all) or crop (centre square)"
    ),
    borders: str = typer.Option(
        "auto", help="constant border bands (collimation): auto (DICOM only), crop or keep"
    ),
    invert: str = typer.Option("none", help="images whose bone is dark: none, a, b or both"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
) -> None:
    """Predict the patch correspondences of two X-ray views with a trained run; write
    matches.json (top-k per patch of A, boxes in original pixels), matches.png, and with
    --query query.png, with --save-matrix matrix.npy."""
    from xmatch_train.match import MatchOptions, match_pair, match_pairs

    out_folder(out)
    images = [p for p in (a, b) if p is not None]
    if (pairs is None and len(images) != 2) or (pairs is not None and images):
        raise UserError("give two images A B, or --pairs CSV (not both)")
    options = MatchOptions(
        top_k=top_k,
        query=_point(query),
        save_matrix=save_matrix,
        fit=fit,
        borders=borders,
        invert=invert,
        figure=figure,
    )
    options.check()  # before the model loads
    from xmatch_train.corr_finetune.evaluate import load_run

    matcher = load_run(run, checkpoint, device)  # a pretraining or a finetune-corr run
    if matcher.cfg.data.display.mode != "log":
        typer.echo(
            f"note: {run} was trained with display.mode={matcher.cfg.data.display.mode}; images "
            "are windowed as log-domain radiographs",
            err=True,
        )
    if pairs is None:
        result = match_pair(matcher, a, b, out, options)
        typer.echo(f"wrote {', '.join(p.name for p in result.files)} in {out}/")
        return
    done, errors = match_pairs(matcher, pairs, out, options)
    typer.echo(f"matched {done} of {done + len(errors)} pairs into {out}/ (summary.csv)")
    if errors:
        raise typer.Exit(2)


def _point(text: str | None) -> tuple[float, float] | None:
    """``--query X,Y`` as two numbers."""
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(
            f"--query {text}: expected X,Y pixel coordinates of A, e.g. 120,340"
        ) from None
    return x, y
