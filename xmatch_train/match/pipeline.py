"""`xmatch match`: one pair of images, or a CSV of pairs, through a trained run.

Per pair, in its output folder: ``matches.json`` (`xmatch_train.match.outputs`),
``matches.png`` (a few query patches of A and their matches on B), ``query.png`` with a query
point, ``matrix.npy`` (N, N) float32 with ``save_matrix``.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from drrgen.clikit import user_error_message
from drrgen.errors import UserError
from xmatch_train.match.figures import plot_matches, plot_query
from xmatch_train.match.images import read_image
from xmatch_train.match.matcher import Matcher
from xmatch_train.match.outputs import patch_entries, query_entry, write_matches
from xmatch_train.match.preprocess import FITS, Prepared

BORDERS = ("auto", "crop", "keep")
INVERT = ("none", "a", "b", "both")


@dataclass(frozen=True)
class MatchOptions:
    """How to match.

    Attributes:
        top_k: matches listed per patch of A.
        query: (x, y) pixel of A (column, row) whose heat map on B is drawn, or None.
        save_matrix: also write ``matrix.npy``.
        fit: ``pad`` or ``crop`` (non-square images, `xmatch_train.match.preprocess`).
        borders: ``auto`` (crop constant border bands of DICOM images only), ``crop`` (of
            every image) or ``keep``.
        invert: ``none``, ``a``, ``b`` or ``both``: images whose bone is dark.
        figure: draw ``matches.png``.
    """

    top_k: int = 5
    query: tuple[float, float] | None = None
    save_matrix: bool = False
    fit: str = "pad"
    borders: str = "auto"
    invert: str = "none"
    figure: bool = True

    def check(self) -> None:
        """Refuse values the command line cannot have meant (one line each)."""
        if self.top_k < 1:
            raise ValueError(f"--top-k {self.top_k}: must be at least 1")
        for name, value, allowed in (
            ("--fit", self.fit, FITS),
            ("--borders", self.borders, BORDERS),
            ("--invert", self.invert, INVERT),
        ):
            if value not in allowed:
                raise ValueError(f"{name} {value}: expected one of {', '.join(allowed)}")


@dataclass
class MatchResult:
    """One matched pair.

    Attributes:
        out: its folder; files: what was written there.
        corr: (N, N) predicted C (rows: patches of A).
        a, b: the prepared images.
    """

    out: Path
    corr: np.ndarray
    a: Prepared
    b: Prepared
    files: list[Path] = field(default_factory=list)


def _load(matcher: Matcher, path: Path, invert: bool, options: MatchOptions) -> Prepared:
    image = read_image(path, invert=invert)
    crop = options.borders == "crop" or (options.borders == "auto" and image.format == "dicom")
    return matcher.prepare(image, options.fit, crop)


def match_pair(
    matcher: Matcher, path_a: str | Path, path_b: str | Path, out: str | Path, options=None
) -> MatchResult:
    """Match image `path_a` (A) to `path_b` (B) and write the outputs into `out`."""
    options = options or MatchOptions()
    options.check()
    inv = options.invert
    a = _load(matcher, Path(path_a), inv in ("a", "both"), options)
    b = _load(matcher, Path(path_b), inv in ("b", "both"), options)
    corr = matcher.predict(a, b)  # (N, N)
    grid, k = matcher.grid, options.top_k
    query = None
    if options.query is not None:
        query = query_entry(options.query, corr, a, b, grid, k)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = MatchResult(out, corr, a, b)
    patches = patch_entries(corr, a, b, grid, k)
    result.files.append(write_matches(out / "matches.json", _header(matcher), a, b, patches, query))
    title = f"{Path(a.radiograph.path).name} -> {Path(b.radiograph.path).name}"
    if options.figure:
        plot_matches(a, b, corr, grid, out / "matches.png", f"{title} ({matcher.run_dir})")
        result.files.append(out / "matches.png")
    if query is not None:
        plot_query(a, b, query, corr, grid, out / "query.png", title)
        result.files.append(out / "query.png")
    if options.save_matrix:
        np.save(out / "matrix.npy", corr.astype(np.float32))
        result.files.append(out / "matrix.npy")
    return result


def _header(matcher: Matcher) -> dict:
    """The run and model part of ``matches.json``."""
    return dict(
        run=str(matcher.run_dir),
        checkpoint=str(matcher.checkpoint),
        step=matcher.step,
        model=matcher.cfg.model.name,
        image_size=matcher.image_size,
        grid=list(matcher.grid),
        n_patches=matcher.grid[0] * matcher.grid[1],
        rows="patches of A, row-major on the grid; matches: patches of B, best first",
    )


@dataclass(frozen=True)
class PairRow:
    """One row of a pairs CSV: its line number, the two images, the output subfolder name."""

    line: int
    a: Path
    b: Path
    name: str


def read_pairs(csv_path: str | Path) -> list[PairRow]:
    """Rows of a CSV with a header ``a,b[,name]``; relative image paths are taken from the
    CSV's folder. Names default to ``<row>_<stem of a>_<stem of b>`` and are made unique.

    Raises:
        UserError: missing file, missing columns, no rows.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: pairs CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not {"a", "b"} <= set(columns):
            raise UserError(
                f"{csv_path}: needs a header with columns a,b[,name]; found {columns or 'none'}"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    pairs, used = [], set()
    for n, r in enumerate(rows, start=1):
        a, b = csv_path.parent / r["a"], csv_path.parent / r["b"]
        name = _unique(_safe(r.get("name") or f"{n:04d}_{a.stem}_{b.stem}"), used)
        pairs.append(PairRow(n + 1, a, b, name))  # line n + 1: the header is line 1
    if not pairs:
        raise UserError(f"{csv_path}: no pairs (only a header)")
    return pairs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "pair"


def _unique(name: str, used: set[str]) -> str:
    out, n = name, 1
    while out in used:
        n += 1
        out = f"{name}_{n}"
    used.add(out)
    return out


def match_pairs(
    matcher: Matcher,
    csv_path: str | Path,
    out: str | Path,
    options: MatchOptions | None = None,
    echo: Callable[[str], None] | None = None,
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Match every pair of `csv_path`, one subfolder of `out` each, with a progress bar.

    A pair whose images are a user's mistake (missing, unreadable, a CT slice, ...) is reported
    in one line ``error: <csv>:<line>: <reason>`` and skipped; a bug stops the batch with its
    traceback. ``summary.csv`` lists every pair with its status.

    Returns:
        (pairs matched, error lines).
    """
    options = options or MatchOptions()
    options.check()
    rows = read_pairs(csv_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    errors, status = [], []
    for row in tqdm(rows, desc="match", unit="pair", disable=not progress):
        try:
            match_pair(matcher, row.a, row.b, out / row.name, options)
            status.append((row, "ok", ""))
        except Exception as err:
            message = user_error_message(err)
            if message is None:
                raise
            line = f"error: {csv_path}:{row.line}: {message}"
            echo(line)
            errors.append(line)
            status.append((row, "failed", message))
    _write_summary(out / "summary.csv", status)
    return len(rows) - len(errors), errors


def _write_summary(path: Path, status) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "a", "b", "status", "error"])
        for row, state, message in status:
            w.writerow([row.name, row.a, row.b, state, message])
