"""Read-only views of a store: `store_info` (what is in it) and `verify_store` (is it whole)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from drrgen.build.store import ARRAY_NAMES, Layout, open_store, written_blocks


def store_info(url: str, storage_options: dict | None = None) -> dict:
    """Summary of a store.

    Returns:
        dict with ``url``, ``attrs`` (the group attributes), ``layout`` (`Layout`),
        ``written_samples``, ``written_blocks``, ``valid_per_volume`` (samples written per volume)
        and ``bytes`` (stored bytes per array).
    """
    group = open_store(url, "r", storage_options)
    attrs = dict(group.attrs)
    layout = Layout.from_attrs(attrs)
    done = written_blocks(group, layout)
    per_volume = done.reshape(layout.n_volumes, layout.blocks_per_volume).sum(1) * layout.block
    nbytes = {name: int(group[name].nbytes_stored()) for name in ARRAY_NAMES}
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
        f"physics     mu_water {a['mu_water']} 1/mm, hu_air {a['hu_air']} HU",
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
        failed_volumes: the store's ``failed`` entries.
        problems: one line per problem found.
        allow_failed: failed volumes are not counted as problems.
    """

    url: str
    checked_blocks: int = 0
    missing_blocks: list = field(default_factory=list)
    failed_volumes: list = field(default_factory=list)
    problems: list = field(default_factory=list)
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
        return "\n".join(lines)


def _check_arrays(group, layout: Layout) -> list[str]:
    """Shapes, dtypes, chunks and shards against the contract."""
    problems = []
    for name, spec in layout.array_specs().items():
        if name not in group:
            problems.append(f"array {name!r} is missing")
            continue
        arr = group[name]
        shape = tuple(spec["shape"])
        if tuple(arr.shape) != shape or str(arr.dtype) != spec["dtype"]:
            problems.append(
                f"{name}: shape {arr.shape} {arr.dtype}, expected {shape} {spec['dtype']}"
            )
        elif tuple(arr.chunks) != (1, *shape[1:]) or tuple(arr.shards or ()) != (
            layout.block,
            *shape[1:],
        ):
            problems.append(
                f"{name}: chunks {arr.chunks} shards {arr.shards}, expected one "
                f"sample per chunk and {layout.block} per shard"
            )
    return problems


def check_block(data: dict, layout: Layout, volume: dict) -> list[str]:
    """Problems in one block's arrays (no NaN, value ranges, crops inside the volume)."""
    problems = []
    for name in ("views", "corr", "geometry", "pose"):
        bad = ~np.isfinite(data[name])
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} non-finite values (unwritten NaN fill?)")
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

    Reads every written block whole (shard-aligned), which also checks each chunk's CRC32C.

    Args:
        url: store path or URL.
        storage_options: fsspec options.
        quick: only check attributes, arrays and block markers.
        allow_failed: do not count volumes recorded as failed as problems.
        progress: show a progress bar over blocks.

    Returns:
        A `VerifyReport` (``ok`` tells the verdict).
    """
    group = open_store(url, "r", storage_options)
    attrs = dict(group.attrs)
    layout = Layout.from_attrs(attrs)
    report = VerifyReport(
        url, failed_volumes=list(attrs.get("failed", [])), allow_failed=allow_failed
    )
    report.problems += _check_arrays(group, layout)
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
    blocks = np.flatnonzero(done)
    for b in tqdm(blocks, desc="verify", unit="block", disable=not progress):
        sl = layout.block_samples(int(b))
        vid, _ = layout.block_volume(int(b))
        try:
            data = {name: np.asarray(group[name][sl]) for name in ARRAY_NAMES}
        except Exception as exc:  # a CRC32C mismatch or an undecodable shard
            report.problems.append(f"block {b}: cannot be read ({type(exc).__name__}: {exc})")
            continue
        report.problems += [
            f"block {b}: {p}" for p in check_block(data, layout, attrs["volumes"][vid])
        ]
        report.checked_blocks += 1
    return report
