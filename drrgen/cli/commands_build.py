"""Dataset commands: build a store of DRR samples, and inspect, verify and show it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from drrgen.build.config import load_config
from drrgen.cli.app import app
from drrgen.clikit import local_out_folder, on_interrupt
from drrgen.errors import UserError


def _explicit(ctx: typer.Context, name: str) -> bool:
    """True when option `name` was given (command line or environment), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _command_line(ctx: typer.Context) -> str:
    """The command as given (explicit options only), for the rerun hint."""
    words = ctx.command_path.split(" ")
    for param in ctx.command.params:
        if not _explicit(ctx, param.name):
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        values = value if isinstance(value, tuple | list) else (value,)
        opts = [] if param.param_type_name == "argument" else [param.opts[0]]
        words += [*opts, *(str(v) for v in values)]
    return shlex.join(words)


def _storage_options(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--storage-options {text}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"--storage-options {text}: expected a JSON object {{...}}")
    return value


def _interrupted(out: str, storage_options: dict | None, command: str) -> str:
    """What an interrupted build kept, and the command that resumes it (for Ctrl-C)."""
    from drrgen.build.store import open_store
    from drrgen.store_contract import written_blocks

    try:
        done = written_blocks(open_store(out, "r", storage_options))
        kept = f"{int(done.sum())}/{done.size} blocks are written in {out} and kept"
    except Exception:  # no store yet (interrupted while reading the CTs) or unreadable
        kept = f"blocks already written in {out} (if any) are kept"
    return f"{kept}; rerun the same command to resume: {command}"


@app.command()
def build(
    ctx: typer.Context,
    ct_dir: Path = typer.Option(
        ...,
        help="Folder of CTs, searched recursively (NIfTI, NRRD, MetaImage, DICOM series folders).",
    ),
    out: str = typer.Option(..., help="Store to write: a path (x.zarr) or fsspec URL."),
    config: Path | None = typer.Option(
        None, help="YAML build config (e.g. pipelines/build_default.yaml); KEY=VALUE win over it."
    ),
    overrides: list[str] | None = typer.Argument(
        None,
        metavar="KEY=VALUE",
        help="Build settings over the config file's, e.g. size=128 patch=8 samples_per_ct=64 "
        "sampling.crop_fraction=[0.5,1] (the keys of BuildConfig, pipelines/build_default.yaml).",
    ),
    workers: int | None = typer.Option(
        None,
        min=0,
        help="Local worker processes (default: cores / "
        "threads); 0 runs in this process without Dask.",
    ),
    threads: int | None = typer.Option(
        None,
        min=1,
        help="Numba threads per worker (default: cores / workers, 1 when neither is given).",
    ),
    scheduler: str | None = typer.Option(None, help="Address of a running Dask scheduler."),
    slurm_config: Path | None = typer.Option(
        None, help="dask-jobqueue SLURM config YAML (see pipelines/slurm/)."
    ),
    storage_options: str | None = typer.Option(
        None, help="fsspec storage options as JSON, for URL stores."
    ),
    overwrite: bool = typer.Option(
        False, help="Delete an existing store built with other parameters and start over."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    device: str = typer.Option(
        "cpu",
        help="Where DRRs are rendered: cpu (Numba) or cuda / cuda:N (torch on the GPU; "
        "correspondence stays on the CPU). Stores agree across devices to 1e-5 relative.",
    ),
) -> None:
    """Build (or resume) a Zarr store of DRR samples with correspondence matrices.

    Rerunning the same command resumes an interrupted build: only missing blocks are built and
    the result is identical to an uninterrupted build, for any number of workers.
    """
    from drrgen.build import ClusterOptions
    from drrgen.build import build as run_build
    from drrgen.projector.torch_joseph import parse_device

    parse_device(device)  # one-line error before anything is created (e.g. no GPU)
    local_out_folder(out)
    options = _storage_options(storage_options)
    cfg = load_config(config, overrides)
    cluster = ClusterOptions(
        workers, threads, scheduler, str(slurm_config) if slurm_config else None
    )
    on_interrupt(ctx, lambda: _interrupted(out, options, _command_line(ctx)))
    summary = run_build(
        ct_dir,
        out,
        cfg,
        cluster,
        overwrite=overwrite,
        storage_options=options,
        progress=progress,
        echo=lambda s: typer.echo(s, err=True),
        device=device,
    )
    typer.echo(summary.format())
    if summary.failed:
        cmd = _command_line(ctx)
        typer.echo(
            f"\n{len(summary.failed)} volume(s) failed (listed above and in the store's 'failed' "
            "attribute); their samples keep volume_id -1. Fix or replace those files and rerun "
            f"the same command to build only what is missing:\n  {cmd}\n"
            "(Removing files changes the volume list: that needs --overwrite.)",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def info(
    store: str = typer.Argument(..., help="Store path or URL."),
    volumes: bool = typer.Option(False, help="List every volume."),
    storage_options: str | None = typer.Option(None, help="fsspec options as JSON."),
) -> None:
    """What a store holds: sizes, parameters, volumes, completeness."""
    from drrgen.build.inspect import format_info, store_info

    summary = store_info(store, _storage_options(storage_options))
    typer.echo(format_info(summary, volumes=volumes))


@app.command()
def verify(
    store: str = typer.Argument(..., help="Store path or URL."),
    quick: bool = typer.Option(False, help="Only check the block markers, not the data."),
    allow_failed: bool = typer.Option(False, help="Accept volumes recorded as failed."),
    repair: bool = typer.Option(
        False,
        help="Rebuild damaged and missing blocks: `drrgen build` with the store's own "
        "parameters and CT folder.",
    ),
    ct_dir: Path | None = typer.Option(
        None, help="With --repair: the CT folder, if it moved (default: the store's ct_dir)."
    ),
    workers: int | None = typer.Option(
        None, min=0, help="With --repair: local worker processes, as for `drrgen build`."
    ),
    threads: int | None = typer.Option(
        None, min=1, help="With --repair: Numba threads per worker, as for `drrgen build`."
    ),
    storage_options: str | None = typer.Option(None, help="fsspec options as JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Check a store: every block written and intact (per-sample checksums, CRC32C of every
    chunk), shapes and value ranges; one line per damaged block.

    Exits 1 when a problem is found (with --repair: when the store is still incomplete).
    """
    from drrgen.build.inspect import verify_store

    options = _storage_options(storage_options)
    if repair:
        _repair(store, ct_dir, workers, threads, options, progress)
        return
    report = verify_store(store, options, quick=quick, allow_failed=allow_failed, progress=progress)
    typer.echo(report.format())
    if not report.ok:
        raise typer.Exit(1)


def _repair(store, ct_dir, workers, threads, options, progress) -> None:
    """`drrgen verify --repair`: rebuild what is damaged or missing, print the summary."""
    from drrgen.build import ClusterOptions
    from drrgen.build.pipeline import repair_store

    summary = repair_store(
        store,
        ct_dir,
        ClusterOptions(workers, threads),
        storage_options=options,
        progress=progress,
        echo=lambda s: typer.echo(s, err=True),
    )
    typer.echo(summary.format())
    if not summary.complete:
        raise typer.Exit(1)


@app.command()
def show(
    store: str = typer.Argument(..., help="Store path or URL."),
    index: int = typer.Option(0, help="Sample index."),
    out: Path = typer.Option(Path("sample.png"), help="Figure to write (PNG, PDF, SVG)."),
    patch_index: int | None = typer.Option(
        None,
        "--patch-index",
        help="Patch of view 0 to follow (row-major) (default: picked automatically).",
    ),
    storage_options: str | None = typer.Option(None, help="fsspec options as JSON."),
) -> None:
    """Draw one sample: its views, a patch of view 0 and its correspondences, the matrices."""
    from drrgen.build.store import open_store
    from drrgen.viz import show_sample
    from drrgen.viz.figure import check_path

    check_path(out)
    group = open_store(store, "r", _storage_options(storage_options))
    path = show_sample(group, index, out, patch_index=patch_index)
    typer.echo(f"wrote {path}")
