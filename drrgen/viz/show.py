"""`show_sample`: one stored sample drawn so a user can check it by eye.

Top row: the V views (display transform 1 - exp(-x / s) of the line integrals x, bone bright;
s = 1 unless the anatomy is thick, see `display_scale`). A
patch of view 0 is boxed; in every other view its correspondences C_0j[a, :] are overlaid in
orange, and the part of the ray through the box centre that crosses the crop is dashed (its
projection, from the stored geometry and the volume's affine alone): the highlighted patches
must lie along it. Bottom row: sample facts, and the matrices C_0j with row a marked.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from drrgen.geometry import View
from drrgen.store_contract import air_threshold
from drrgen.viz import figure

OVERLAY_RGB = (1.0, 0.45, 0.0)


def pick_patch(rows: list[np.ndarray]) -> int:
    """A patch of view 0 worth following: the strongest correspondence peak (summed over the
    other views) among the central half of the patch grid (rim patches see grazing rays along
    the crop's faces), or anywhere if the centre holds none.

    Args:
        rows: the matrices C_0j, each (N, N) with N = n * n patches.

    Returns:
        Patch index a (row-major) of view 0.
    """
    rows = [np.nan_to_num(np.asarray(c, dtype=np.float64)) for c in rows]
    score = sum(c.max(axis=1) for c in rows) + 1e-6 * sum(c.sum(axis=1) for c in rows)
    n = int(round(np.sqrt(score.size)))
    r, c = np.divmod(np.arange(score.size), n)
    central = (r >= n // 4) & (r < n - n // 4) & (c >= n // 4) & (c < n - n // 4)
    if np.any(score[central] > 0):
        score = np.where(central, score, -1.0)
    return int(np.argmax(score))


def display_scale(drrs: np.ndarray) -> float:
    """The scale s of the display transform ``1 - exp(-x / s)``: 1 for thin anatomy, the
    median line integral of the imaged area when it exceeds 1 (thick anatomy such as a chest
    would otherwise saturate)."""
    x = np.asarray(drrs, dtype=np.float32)
    inside = x[x > 0.05]
    return float(max(1.0, np.median(inside))) if inside.size else 1.0


def _display(drr: np.ndarray, scale: float) -> np.ndarray:
    """Line integrals -> [0, 1] radiograph-like intensities (attenuation bright)."""
    return 1.0 - np.exp(-np.asarray(drr, dtype=np.float32) / np.float32(scale))


def _patch_ray(view0: View, rc) -> tuple[np.ndarray, np.ndarray]:
    """(source, direction) mm of view 0's ray through pixel `rc` = (row, col)."""
    h, w = view0.shape
    r, c = rc
    pixel = view0.detector_center + (c - (w - 1) / 2) * view0.u + (r - (h - 1) / 2) * view0.v
    return view0.source, pixel - view0.source


def _clip_to_box(origin, direction, affine, start, stop):
    """The (2, 3) mm end points of the ray's part inside the voxel box [start, stop) (i, j, k),
    or None when it misses the box."""
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    o = inv[:3, :3] @ origin + inv[:3, 3]
    d = inv[:3, :3] @ direction
    lo, hi = np.asarray(start) - 0.5, np.asarray(stop) - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - o) / d, (hi - o) / d
    t_in = np.nanmax(np.minimum(t0, t1))
    t_out = np.nanmin(np.maximum(t0, t1))
    if not t_in < t_out:
        return None
    return np.array([origin + t * direction for t in (t_in, t_out)])


def _read_sample(group, index: int) -> dict:
    n = group["volume_id"].shape[0]
    if not 0 <= index < n:
        raise IndexError(f"sample index {index} out of range: the store holds {n} samples")
    vid = int(group["volume_id"][index])
    if vid < 0:
        raise ValueError(
            f"sample {index} is not written (its volume failed or the build is "
            "incomplete: see `drrgen info`)"
        )
    return {
        name: np.asarray(group[name][index])
        for name in ("views", "corr", "geometry", "pose", "crop")
    } | {"volume_id": vid}


def show_sample(group, index: int, out, patch_index: int | None = None, dpi: int = 110) -> Path:
    """Draw sample `index` of an open store to the image file `out`.

    Args:
        group: the store (`drrgen.build.open_store`).
        index: sample index.
        out: output file (PNG, PDF, SVG by suffix).
        patch_index: patch a of view 0 to follow (row-major); None picks `pick_patch`.
        dpi: resolution of raster output.

    Returns:
        The written path.
    """
    attrs = dict(group.attrs)
    s = _read_sample(group, index)
    v, h, w = s["views"].shape
    patch = int(attrs["patch"])
    grid_w = w // patch
    pairs = [tuple(p) for p in attrs["pairs"]]
    rows = [s["corr"][pairs.index((0, j))].astype(np.float32) for j in range(1, v)]
    a = pick_patch(rows) if patch_index is None else int(patch_index)
    if not 0 <= a < rows[0].shape[0]:
        raise ValueError(f"--patch-index {a} out of range 0..{rows[0].shape[0] - 1}")
    pr, pc = divmod(a, grid_w)
    views = [View.from_vector(g, (h, w)) for g in s["geometry"]]
    pose = dict(zip(attrs["pose_fields"], s["pose"].T, strict=True))

    volume = attrs["volumes"][s["volume_id"]]
    scale = display_scale(s["views"])
    ray = _patch_ray(views[0], (pr * patch + (patch - 1) / 2, pc * patch + (patch - 1) / 2))
    segment = None
    if volume.get("affine"):
        segment = _clip_to_box(*ray, volume["affine"], *s["crop"])
    fig, axes = figure.subplots(2, v, figsize=(4.2 * v, 8.6), squeeze=False)
    for k in range(v):
        ax = axes[0, k]
        ax.imshow(_display(s["views"][k], scale), cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"view {k}: primary {pose['primary_deg'][k]:.0f}°, "
            f"tilt {pose['secondary_deg'][k]:+.0f}°",
            fontsize=10,
        )
        if k == 0:
            ax.add_patch(
                plt.Rectangle(
                    (pc * patch - 0.5, pr * patch - 0.5),
                    patch,
                    patch,
                    fill=False,
                    edgecolor="cyan",
                    linewidth=2,
                )
            )
        else:
            heat = np.kron(rows[k - 1][a].reshape(-1, grid_w), np.ones((patch, patch)))
            rgba = np.zeros((h, w, 4), np.float32)
            rgba[..., :3] = OVERLAY_RGB
            rgba[..., 3] = 0.8 * np.clip(heat, 0, 1)
            ax.imshow(rgba)
            if segment is not None:
                (r0, c0), (r1, c1) = views[k].project_points(segment)
                ax.plot([c0, c1], [r0, r1], color="cyan", linewidth=1.2, linestyle="--")
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    _facts(axes[1, 0], attrs, s, index, a, (pr, pc), pose, scale)
    for j in range(1, v):
        ax = axes[1, j]
        im = ax.imshow(rows[j - 1], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.axhline(a, color="cyan", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"C_0{j}: row = patch of view 0, column = view {j}", fontsize=9)
        ax.set_xlabel(f"patch of view {j} (row-major)", fontsize=8)
        ax.set_ylabel("patch of view 0", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return figure.save(fig, out, dpi)


def _facts(ax, attrs, s, index, a, rc, pose, scale) -> None:
    """Text panel: where the sample comes from and how it was imaged."""
    vol = attrs["volumes"][s["volume_id"]]
    start, stop = s["crop"]
    lines = [
        f"sample {index}   volume [{vol['id']}] {vol['path']}",
        f"crop (i, j, k) {start.tolist()} .. {stop.tolist()}",
        f"patch {a} of view 0 = row {rc[0]}, col {rc[1]} (cyan box)",
        "orange: C_0j[patch, :]",
        "dashed: the ray through the box centre, inside the crop",
        "",
    ]
    for k in range(s["views"].shape[0]):
        lines.append(
            f"view {k}: SID {pose['source_to_isocenter_mm'][k]:.0f} mm, "
            f"SDD {pose['source_to_detector_mm'][k]:.0f} mm, "
            f"pixel {pose['pixel_mm'][k]:.2f} mm"
        )
    lines += [
        "",
        "display: 1 - exp(-x" + (f" / {scale:.2g}" if scale != 1 else "") + "), x = line integral",
        f"mu_water {attrs['mu_water']} 1/mm",
        f"air_threshold_hu {air_threshold(attrs)} HU, patch {attrs['patch']} px",
    ]
    ax.text(
        0.0,
        1.0,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize=8,
        transform=ax.transAxes,
    )
    ax.axis("off")
