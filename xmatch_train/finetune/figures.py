"""Fine-tuning curves: training loss and validation AUC of every run, beside chance."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_finetune_curves(logs: dict[str, tuple[str, list[dict]]], path: str | Path) -> None:
    """Training loss and validation AUC against step, one colour per row (seeds share it),
    with chance dotted (loss ln 2 of a constant 0.5, AUC 0.5): a curve on it learnt nothing.

    Args:
        logs: run name -> (row label, records of the run's ``log.jsonl``).
        path: output PNG.
    """
    fig, (ax_l, ax_v) = plt.subplots(1, 2, figsize=(12, 4))
    colours: dict[str, str] = {}
    for row, records in logs.values():
        first = row not in colours
        colour = colours.setdefault(row, f"C{len(colours) % 10}")
        label = row if first else None
        train = [r for r in records if "split" not in r and r.get("loss") is not None]
        val = [r for r in records if r.get("split") == "val" and r.get("auc") is not None]
        ax_l.plot([r["step"] for r in train], [r["loss"] for r in train], colour, lw=0.8,
                  alpha=0.7, label=label)  # fmt: skip
        ax_v.plot([r["step"] for r in val], [r["auc"] for r in val], colour, marker="o", ms=3,
                  label=label)  # fmt: skip
    ax_l.axhline(math.log(2), color="k", ls=":", lw=1)
    ax_v.axhline(0.5, color="k", ls=":", lw=1)
    ax_l.set_ylabel("training loss (dotted: ln 2, chance)")
    ax_v.set_ylabel("validation AUC (dotted: chance)")
    for ax in (ax_l, ax_v):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
