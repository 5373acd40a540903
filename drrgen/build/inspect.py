"""Read-only views of a store: `store_info` (what is in it) and `verify_store` (is it whole)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from drrgen.build.store import open_store
from drrgen.store_contract import (
    CHECKSUMMED,
    Layout,
    air_threshold,
    array_names,
    array_problems,
    block_problems,
    repair_command,
    undecodable,
    written_blocks,
)


def store_info(url: str, storage_options: dict | None = None) -> dict:
    """Summary of a store.

    Returns:
        dict with ``url``, ``attrs`` (the group attributes), ``layout`` (`Layout`),
        ``written_samples``, ``written_blocks``, ``valid_per_volume`` (samples written per volume)
        and ``bytes`` (stored bytes per array).
    """
    group = open_store(url, "r", storage_options)
    attrs = dict(group.attrs)
    layout = Layout.from_attrs(attrs, url)
    done = written_blocks(group, layout)
    per_volume = done.reshape(layout.n_volumes, layout.blocks_per_volume).sum(1) * layout.block
    names = array_names(int(attrs["format_version"]))
    nbytes = {name: int(group[name].nbytes_stored()) for name in names}
    return {
        "url": url,
        "attrs": attrs,
        "layout": layout,
        "written_blocks": int(done.sum()),
        "written_samples": int(done.sum()) * layout.block,
        "valid_per_volume": per_volume.tolist(),
        "bytes": nbytes,
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def format_info(info: dict, volumes: bool = False) -> str:
    """Human-readable text of `store_info` (all volumes listed when `volumes`)."""
    a, lay = info["attrs"], info["layout"]
    total = sum(info["bytes"].values())
    written = info["written_samples"]
    state = "complete" if a.get("complete") else "INCOMPLETE"
    lines = [
        f"store       {info['url']}  ({a['format']} v{a['format_version']}, "
        f"drrgen {a.get('drrgen_version')})",
        f"status      {state}: {written}/{lay.n_samples} samples written "
        f"({info['written_blocks']}/{lay.n_blocks} blocks of {lay.block})",
        f"samples     {lay.n_volumes} volumes x {lay.samples_per_ct}; {lay.views} views of "
        f"{lay.size}x{lay.size} px; {lay.n_pairs} pair(s) {a['pairs']}; "
        f"{lay.n_patches} patches of {lay.patch} px",
        f"physics     mu_water {a['mu_water']} 1/mm, air_threshold_hu {air_threshold(a)} HU",
        f"size        {_mb(total)} stored, {total / max(written * lay.n_pairs, 1) / 1e3:.1f} kB "
        "per pair (" + ", ".join(f"{k} {_mb(v)}" for k, v in info["bytes"].items()) + ")",
        f"ct_dir      {a.get('ct_dir')}",
        f"created     {a.get('created')}, updated {a.get('updated')}",
        "params      " + _params_line(a["params"]),
    ]
    for f in a.get("failed", []):
        lines.append(f"FAILED      [{f['id']}] {f['path']}: {f['reason']}")
    if volumes:
        for v, n in zip(a["volumes"], info["valid_per_volume"], strict=True):
            shape = "x".join(map(str, v["shape"])) if v.get("shape") else "?"
            spacing = ",".join(f"{s:.3g}" for s in v["spacing"]) if v.get("spacing") else "?"
            lines.append(
                f"  [{v['id']:>4}] {n:>6} samples  {shape:>13} voxels  {spacing:>14} mm"
                f"  {(v.get('sha256') or '?')[:12]}  {v['path']}"
            )
    return "\n".join(lines)


def _params_line(params: dict) -> str:
    top = {k: v for k, v in params.items() if k != "sampling"}
    line = " ".join(f"{k}={v}" for k, v in top.items())
    samp = " ".join(f"{k}={v}" for k, v in params.get("sampling", {}).items())
    return f"{line}\n            sampling: {samp}"


@dataclass
class VerifyReport:
    """Outcome of `verify_store`.

    Args:
        url: the store.
        checked_blocks: blocks whose data was read and checked.
        missing_blocks: blocks not written that belong to no failed volume.
        damaged_blocks: written blocks whose data is damaged.
        failed_volumes: the store's ``failed`` entries.
        problems: one line per problem found (one per damaged block).
        notes: what was not checked (e.g. no checksums in a format 1 store).
        allow_failed: failed volumes are not counted as problems.
    """

    url: str
    checked_blocks: int = 0
    missing_blocks: list = field(default_factory=list)
    damaged_blocks: list = field(default_factory=list)
    failed_volumes: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    allow_failed: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and (self.allow_failed or not self.failed_volumes)

    def format(self) -> str:
        lines = [
            f"{self.url}: {'OK' if self.ok else 'PROBLEMS'} ({self.checked_blocks} blocks checked)"
        ]
        lines += [
            f"  failed volume [{f['id']}] {f['path']}: {f['reason']}" for f in self.failed_volumes
        ]
        shown = self.problems[:50]
        lines += [f"  {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        lines += [f"  note: {n}" for n in self.notes]
        if self.damaged_blocks or self.missing_blocks:
            lines.append(f"  repair: {repair_command(self.url)}")
        return "\n".join(lines)


def check_written_block(group, layout: Layout, block: int, version: int):
    """Read one written block and check it against its checksums (format 1: fill values).

    Returns:
        (problems, data): one phrase per damaged array (`block_problems`, plus arrays that
        cannot be decoded); data: name -> (block, ...) values of the `CHECKSUMMED` arrays.
    """
    sl = layout.block_samples(block)
    problems, data = [], {}
    for name in CHECKSUMMED + (("checksum",) if version >= 2 else ()):
        try:
            data[name] = np.asarray(group[name][sl])
        except ValueError as exc:  # Zarr: a chunk whose CRC32C does not match
            problems.append(undecodable(name, exc))
    checksums = data.pop("checksum", None)  # None: format 1, or unreadable (named above)
    return problems + block_problems(data, checksums, sl.start), data


def check_block(data: dict, volume: dict) -> list[str]:
    """Problems in one intact block's values (no NaN, ranges, crops inside the volume)."""
    problems = []
    for name in ("views", "corr", "geometry", "pose"):
        bad = ~np.isfinite(data[name])
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} non-finite values")
    if np.nanmin(data["views"]) < 0:
        problems.append("views: negative line integrals")
    corr = data["corr"]
    if np.nanmin(corr) < 0 or np.nanmax(corr) > 1:
        problems.append(f"corr: values outside [0, 1] ({np.nanmin(corr)}, {np.nanmax(corr)})")
    crop = data["crop"]
    if np.any(crop[:, 0] < 0) or np.any(crop[:, 1] <= crop[:, 0]):
        problems.append("crop: empty or negative boxes")
    if volume.get("shape") and np.any(crop[:, 1] > np.asarray(volume["shape"])):
        problems.append(f"crop: boxes beyond the volume shape {volume['shape']}")
    return problems


def verify_store(
    url: str,
    storage_options: dict | None = None,
    quick: bool = False,
    allow_failed: bool = False,
    progress: bool = False,
) -> VerifyReport:
    """Check a store against its contract.

    Reads every written block whole (shard-aligned): each chunk's CRC32C, each sample's
    checksum (format 2; format 1 stores: the fill value only), then value ranges.

    Args:
        url: store path or URL.
        storage_options: fsspec options.
        quick: only check attributes, arrays and block markers.
        allow_failed: do not count volumes recorded as failed as problems.
        progress: show a progress bar over blocks.

    Returns:
        A `VerifyReport` (``ok`` tells the verdict); one problem line per damaged block.
    """
    group = open_store(url, "r", storage_options)
    attrs = dict(group.attrs)
    version = int(attrs["format_version"])
    layout = Layout.from_attrs(attrs, url)
    report = VerifyReport(
        url, failed_volumes=list(attrs.get("failed", [])), allow_failed=allow_failed
    )
    report.problems += array_problems(group, layout, version)
    if report.problems:
        return report
    done = written_blocks(group, layout)
    failed_ids = {f["id"] for f in report.failed_volumes}
    for b in np.flatnonzero(~done):
        vid, _ = layout.block_volume(int(b))
        if vid not in failed_ids:
            report.missing_blocks.append(int(b))
    if report.missing_blocks:
        report.problems.append(
            f"{len(report.missing_blocks)} blocks not written: {report.missing_blocks[:20]}"
        )
    if bool(attrs.get("complete")) != bool(done.all()):
        report.problems.append(
            f"attribute complete={attrs.get('complete')} but "
            f"{int(done.sum())}/{layout.n_blocks} blocks are written"
        )
    if quick:
        return report
    if version < 2:
        report.notes.append(
            f"format {version} store without checksums: blocks checked for fill values "
            "(NaN, -1) only; `drrgen verify --repair` records checksums"
        )
    for b in tqdm(np.flatnonzero(done), desc="verify", unit="block", disable=not progress):
        b = int(b)
        vid, _ = layout.block_volume(b)
        volume = attrs["volumes"][vid]
        problems, data = check_written_block(group, layout, b, version)
        if problems:
            report.damaged_blocks.append(b)
        else:
            problems = check_block(data, volume)
        if problems:
            report.problems.append(f"block {b} ({volume['path']}): " + "; ".join(problems))
        report.checked_blocks += 1
    return report
