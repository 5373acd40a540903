"""Figures: a sample's predicted vs true matrix with the matching patches, and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def pick_patch(target: np.ndarray, threshold: float = 0.2) -> int:
    """The view-0 patch with the most ground-truth partners above `threshold` (row of C)."""
    counts = (target > threshold).sum(axis=1)
    return int(np.argmax(counts)) if counts.max() > 0 else int(np.argmax(target.max(axis=1)))


def _boxes(ax, mask: np.ndarray, grid: tuple[int, int], shape: tuple[int, int], color: str) -> None:
    ph, pw = shape[0] / grid[0], shape[1] / grid[1]
    for n in np.flatnonzero(mask):
        r, c = divmod(int(n), grid[1])
        ax.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, ec=color, lw=1))


def _overlay(ax, image: np.ndarray, row: np.ndarray, grid: tuple[int, int], title: str) -> None:
    h, w = image.shape
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(
        row.reshape(grid),
        cmap="magma",
        vmin=0,
        vmax=1,
        alpha=0.45,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_pair(
    view0: np.ndarray,
    view1: np.ndarray,
    target: np.ndarray,
    pred: np.ndarray,
    grid: tuple[int, int],
    path: str | Path,
    threshold: float = 0.2,
    title: str = "",
) -> int:
    """Save the picture a user checks a prediction with.

    Top row: view 0 with one patch (yellow), view 1 with that patch's true partners (green
    boxes, C > threshold, heat = C row), view 1 with the predicted partners (red, heat = C_hat
    row). Bottom row: true C, predicted C_hat, |C_hat - C| (rows: view-0 patches, columns:
    view-1 patches).

    Args:
        view0, view1: (H, W) images in [0, 1].
        target, pred: (N, N) matrices.
        grid: patch grid (rows, cols), N = rows * cols.
        path: output PNG.
        threshold: positive threshold for the boxes.
        title: figure title.

    Returns:
        The view-0 patch shown.
    """
    a = pick_patch(target, threshold)
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.2))
    ax = axes[0, 0]
    ax.imshow(view0, cmap="gray", vmin=0, vmax=1)
    sel = np.zeros(target.shape[0], bool)
    sel[a] = True
    _boxes(ax, sel, grid, view0.shape, "yellow")
    ax.set_title(f"view 0, patch {a} (row {a // grid[1]}, col {a % grid[1]})", fontsize=9)
    ax.axis("off")
    _overlay(axes[0, 1], view1, target[a], grid, f"view 1: true C[{a}, :] > {threshold:g} (green)")
    _boxes(axes[0, 1], target[a] > threshold, grid, view1.shape, "lime")
    _overlay(
        axes[0, 2], view1, pred[a], grid, f"view 1: predicted C_hat[{a}, :] > {threshold:g} (red)"
    )
    _boxes(axes[0, 2], pred[a] > threshold, grid, view1.shape, "red")
    for ax, m, name in (
        (axes[1, 0], target, "true C"),
        (axes[1, 1], pred, "predicted C_hat"),
        (axes[1, 2], np.abs(pred - target), "|C_hat - C|"),
    ):
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("view-1 patch")
        ax.set_ylabel("view-0 patch")
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return a


def plot_curves(logs: dict[str, list[dict]], path: str | Path) -> None:
    """Training loss, validation AP and validation MSE against step, one colour per run, with
    the no-image baselines on the same validation pairs dashed (mean matrix) and dotted (all
    zeros): a curve on its baseline has learnt nothing from the images.

    Args:
        logs: run name -> records of its ``log.jsonl``.
        path: output PNG.
    """
    fig, (ax_l, ax_v, ax_m) = plt.subplots(1, 3, figsize=(15, 4))
    for n, (name, records) in enumerate(logs.items()):
        colour = f"C{n % 10}"
        train = [
            r for r in records if r.get("split", "train") == "train" and r.get("loss") is not None
        ]
        val = [r for r in records if r.get("split") == "val" and r.get("ap") is not None]
        if train:
            ax_l.plot([r["step"] for r in train], [r["loss"] for r in train], colour, label=name)
        if not val:
            continue
        steps = [r["step"] for r in val]
        ax_v.plot(steps, [r["ap"] for r in val], colour, marker="o", ms=3, label=name)
        ax_m.plot(steps, [r["mse"] for r in val], colour, marker="o", ms=3, label=name)
        if "mean_ap" in val[-1]:
            ax_v.plot(steps, [r["mean_ap"] for r in val], colour, ls="--", lw=1)
            ax_m.plot(steps, [r["mean_mse"] for r in val], colour, ls="--", lw=1)
            ax_m.plot(steps, [r["zero_mse"] for r in val], colour, ls=":", lw=1)
    ax_l.set_yscale("log")
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("training loss")
    ax_v.set_xlabel("step")
    ax_v.set_ylabel("validation AP (dashed: mean-matrix baseline)")
    ax_m.set_xlabel("step")
    ax_m.set_ylabel("validation MSE (dashed: mean matrix, dotted: zeros)")
    for ax in (ax_l, ax_v, ax_m):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
