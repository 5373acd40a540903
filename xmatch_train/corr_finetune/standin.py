"""An offline stand-in for real annotated pairs (``xmatch make-standin``): the two views of
store samples rendered as detector images, with a few positive and many negative point
correspondences drawn from the true matrix, in the annotation format.

Use a store built from CTs the pretraining never saw (``make table2``: phantoms with seeds
20000 and up; the pretraining used 100-219 and the chest CT), at the pretraining store's
resolution and patch grid (``pipelines/table2_store.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from drrgen.errors import UserError
from xmatch_train.corr_finetune.annotations import AnnotatedPair, write_annotations
from xmatch_train.corr_finetune.entries import patch_centre

RENDERS = ("realistic", "simple")


@dataclass(frozen=True)
class StandinOptions:
    """What to draw per pair.

    Attributes:
        positives: positive point pairs per pair (entries with C >= `pos_min`).
        negatives: negative point pairs per pair (entries with C <= `neg_max`).
        pos_min: lowest C of a positive (0.2, the metrics' threshold).
        neg_max: highest C of a negative (0: no shared tissue at all).
        render: ``realistic`` (default: `realistic_image`, the training-time realistic X-ray
            renderer `xmatch_train.data.xray` with its default ranges, one fixed draw per
            image) or ``simple`` (`detector_image`: Beer-Lambert, Poisson noise, log, window).
        photons: unattenuated photons per pixel of the ``simple`` look.
        seed: seed of the points and the noise.
    """

    positives: int = 3
    negatives: int = 100
    pos_min: float = 0.2
    neg_max: float = 0.0
    render: str = "realistic"
    photons: float = 2e4
    seed: int = 0


def detector_image(
    line_integral: np.ndarray, rng: np.random.Generator, photons: float
) -> np.ndarray:
    """A DRR as a detector would deliver it, as a 16-bit image (bone bright).

    Beer-Lambert ``I = photons x exp(-L)``, Poisson counts (at least 1), the detector's log
    conversion ``log(photons / counts)``, then a window: the 0.1-99.9 percentiles mapped to
    0-65535 (clipped). The ``simple`` look of the stand-in (`make-standin --render simple`);
    the default is `realistic_image`.

    Args:
        line_integral: (H, W) line integrals of mu (dimensionless).
        photons: unattenuated photons per pixel.

    Returns:
        (H, W) uint16.
    """
    expected = photons * np.exp(-np.asarray(line_integral, np.float64))  # (H, W)
    counts = np.maximum(rng.poisson(expected), 1)
    log = np.log(photons / counts)  # (H, W) noisy line integrals
    lo, hi = np.percentile(log, [0.1, 99.9])
    x = np.clip((log - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.round(x * 65535).astype(np.uint16)


def realistic_image(line_integral: np.ndarray, entropy: list[int]) -> np.ndarray:
    """A DRR rendered as a radiograph by `xmatch_train.data.xray.render` (default ranges of
    `XrayConfig`: dose noise, blur, scatter, heel, collimation, L/R markers, window, gamma),
    drawn from the seed words `entropy`, as a 16-bit image (bone bright).

    Args:
        line_integral: (H, W) line integrals of mu (dimensionless).
        entropy: the image's seed words (e.g. [seed, sample, view]).

    Returns:
        (H, W) uint16.
    """
    import torch

    from xmatch_train.data.xray import XrayConfig, render

    x = torch.from_numpy(np.asarray(line_integral, np.float32))[None, None]  # (1, 1, H, W)
    img = render(x, np.asarray([entropy], np.int64), XrayConfig(enabled=True))[0, 0]
    return np.round(img.numpy().astype(np.float64) * 65535).astype(np.uint16)


def sample_points(corr: np.ndarray, grid: tuple[int, int], size: tuple[int, int], rng, options):
    """Positive and negative point pairs of one (N, N) true matrix, at patch centres.

    Returns:
        (positives, negatives) lists of (x0, y0, x1, y1), or None when the matrix has too few
        positive or negative entries.
    """
    out = []
    for count, chosen in (
        (options.positives, np.flatnonzero(corr.ravel() >= options.pos_min)),
        (options.negatives, np.flatnonzero(corr.ravel() <= options.neg_max)),
    ):
        if chosen.size < count:
            return None
        picks = rng.choice(chosen, size=count, replace=False)
        n = corr.shape[1]
        out.append(
            [
                (*patch_centre(k // n, grid, size), *patch_centre(k % n, grid, size))
                for k in sorted(picks.tolist())
            ]
        )
    return out[0], out[1]


def make_standin(store: str | Path, out: str | Path, options: StandinOptions = StandinOptions()):
    """Write ``images/*.png`` and ``annotations.json`` into `out` from every written sample of
    `store` (its first two views; no split given: ``finetune-corr`` splits by pair).

    Returns:
        (annotation file, pairs written, samples skipped for too few positives).
    """
    import zarr

    from xmatch_train.data.store import read_meta

    if options.render not in RENDERS:
        raise UserError(f"--render {options.render!r}: choose one of {', '.join(RENDERS)}")
    meta = read_meta(str(store))
    group = zarr.open_group(str(store), mode="r")
    shape, grid = tuple(meta.image_shape), tuple(meta.grid)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(np.asarray(meta.volume_id) >= 0)
    pairs, skipped = [], 0
    for s in ids.tolist():
        rng = np.random.default_rng([options.seed, s])
        corr = np.asarray(group["corr"][s, 0], np.float32)  # (N, N): views 0 -> 1
        points = sample_points(corr, grid, shape, rng, options)
        if points is None:
            skipped += 1
            continue
        views = np.asarray(group["views"][s], np.float32)  # (V, H, W)
        names = []
        for v in (0, 1):
            name = f"images/pair{s:05d}_view{v}.png"
            if options.render == "realistic":
                image = realistic_image(views[v], [options.seed, s, v])
            else:
                image = detector_image(views[v], rng, options.photons)
            Image.fromarray(image).save(out / name)
            names.append(str(out / name))
        pairs.append(AnnotatedPair(f"pair{s:05d}", names[0], names[1], *map(tuple, points)))
    if not pairs:
        raise UserError(f"{meta.path}: no sample has {options.positives} positive entries")
    return write_annotations(out / "annotations.json", pairs), len(pairs), skipped
