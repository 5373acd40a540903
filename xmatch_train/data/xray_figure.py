"""The realistic-rendering figure and timing (``docs/xray_render.png``, README).

    python -m xmatch_train.data.xray_figure --store data/pretrain.zarr --out docs/xray_render.png
    python -m xmatch_train.data.xray_figure --time     # ms per batch of 16 pairs at 128 / 256 px

Each row is one stored DRR (view 0 of a sample): the plain display transform, the
Beer-Lambert + log image alone, then each effect alone (exaggerated, fixed values so that it
shows), then the training recipe (`XrayConfig` defaults) with two seeds. The last column is
the only real radiograph available offline: the CR files that pydicom ships as test data are
16 x 16 pixel stubs (its DICOMDIR test set, a C-spine, MONOCHROME1), shown for honesty, not
as a match; no installed package ships a full-size real radiograph.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from xmatch_train.data.batch import display
from xmatch_train.data.xray import XrayConfig, render

# Every effect at its identity: Beer-Lambert and the log transform only.
BARE = XrayConfig(
    enabled=True,
    mu_scale=(1.0, 1.0),
    dose=(0.0, 0.0),
    electronic_noise=(0.0, 0.0),
    blur=(0.0, 0.0),
    scatter=(0.0, 0.0),
    heel=0.0,
    collimation=0.0,
    markers=0.0,
    window_low=(0.5, 0.5),
    window_high=(99.5, 99.5),
    gamma=(1.0, 1.0),
)

# (title, settings changed from BARE): one effect each, strong enough to see.
EFFECTS = (
    ("noise (dose 2,000)", dict(dose=(2000.0, 2000.0), electronic_noise=(2.0, 2.0))),
    ("blur (sigma 1.5 px)", dict(blur=(1.5, 1.5))),
    ("scatter (SPR 0.5)", dict(scatter=(0.5, 0.5))),
    ("heel (up to 30 %)", dict(heel=0.3)),
    ("collimation", dict(collimation=1.0, field=(0.7, 0.8))),
    ("marker", dict(markers=1.0, marker_size=(0.14, 0.14))),
    ("bone-weighted", dict(bone_weight=1.0, bone_center=(0.45, 0.45))),
    ("CLAHE", dict(clahe=1.0, clahe_clip=3.0)),
    ("gamma 0.6, window 2-98 %", dict(gamma=(0.6, 0.6), window_low=(2, 2), window_high=(98, 98))),
)


def pydicom_cr() -> np.ndarray | None:
    """The 16 x 16 CR stub of pydicom's test data as an image in [0, 1] (bright = dense), or
    None when pydicom or the file is missing."""
    try:
        from pydicom.data import get_testdata_file

        from xmatch_train.match.dicom import read_dicom
    except ImportError:
        return None
    path = get_testdata_file("6154", read=False)
    if path is None:
        return None
    pixels = read_dicom(path).pixels.astype(np.float32)
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    return np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1)


def panels(line: torch.Tensor, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(title, (H, W) image) for one (1, 1, H, W) line-integral view."""
    ent = np.array([[seed]])
    out = [("plain display (training so far)", display(line)[0, 0].numpy())]
    out.append(("Beer-Lambert + log", render(line, ent, BARE)[0, 0].numpy()))
    for title, change in EFFECTS:
        out.append((title, render(line, ent, dataclasses.replace(BARE, **change))[0, 0].numpy()))
    for s in (seed, seed + 1):
        img = render(line, np.array([[s]]), XrayConfig(enabled=True))[0, 0].numpy()
        out.append((f"all (data.xray defaults, seed {s})", img))
    return out


def figure(store: str, out: Path, samples: tuple[int, ...] = (0, 2000)) -> Path:
    """Write the figure of view 0 of `samples` of `store` to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    views = zarr.open_group(store, mode="r")["views"]
    real = pydicom_cr()
    rows = [panels(torch.as_tensor(np.asarray(views[s, 0], np.float32))[None, None], s)
            for s in samples]  # fmt: skip
    cols = len(rows[0]) + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 2.1 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, (title, img) in enumerate(row):
            axes[r, c].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(title, fontsize=6)
        ax = axes[r, -1]
        if real is not None and r == 0:
            ax.imshow(real, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title("real CR: pydicom's\n16x16 px test stub", fontsize=6)
        elif r == 0:
            ax.set_title("no real radiograph\navailable offline", fontsize=6)
        else:
            ax.axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{Path(store).name}: stored DRRs (line integrals) rendered realistically "
        "(xmatch_train.data.xray); bright = attenuating",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def time_batches(sides=(128, 256), pairs: int = 16, repeats: int = 10) -> dict[int, float]:
    """Median ms to render a batch of `pairs` pairs (2 x pairs views) with the defaults."""
    g = torch.Generator().manual_seed(0)
    result = {}
    for side in sides:
        line = 3 * torch.rand(2 * pairs, 1, side, side, generator=g)
        cfg = XrayConfig(enabled=True)
        times = []
        for k in range(repeats + 1):
            t = time.perf_counter()
            render(line, np.arange(2 * pairs)[:, None] + k, cfg)
            times.append(time.perf_counter() - t)
        result[side] = 1e3 * float(np.median(times[1:]))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="data/pretrain.zarr")
    parser.add_argument("--out", type=Path, default=Path("docs/xray_render.png"))
    parser.add_argument("--samples", default="0,2000", help="sample indices, one row each")
    parser.add_argument("--time", action="store_true", help="time the renderer instead")
    args = parser.parse_args(argv)
    if args.time:
        for side, ms in time_batches().items():
            print(
                f"{side} px: {ms:.1f} ms per batch of 16 pairs ({torch.get_num_threads()} threads)"
            )
        return
    samples = tuple(int(s) for s in args.samples.split(","))
    print(f"wrote {figure(args.store, args.out, samples)}")


if __name__ == "__main__":
    main()
