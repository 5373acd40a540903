"""`draw_phantoms`: AP and lateral DRRs of phantoms (or any CTs) in one PNG, to check by eye;
`draw_phantom_gallery`: the same for one procedural phantom of each kind, a cast and an implant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drrgen.geometry.carm import carm_view
from drrgen.viz import figure
from drrgen.viz.orientation import draw_labelled_drr

_SID_MM, _SDD_MM = 1000.0, 1200.0  # source-isocenter and source-detector distances


def phantom_views(volume, size: int = 160) -> list:
    """An AP (primary 0 deg) and a lateral (primary 90 deg, source on the patient's left)
    `carm_view` centred on the volume, whose detector holds the whole volume.

    Args:
        volume: a `Volume` (HU or mu), LPS mm.
        size: detector side, pixels.
    """
    extent = np.asarray(volume.shape_ijk) * np.asarray(volume.spacing)
    # The volume's largest cross-section through the isocenter, magnified at its near side.
    half = 0.5 * float(np.max(np.hypot(extent, np.roll(extent, 1))))
    magnification = _SDD_MM / (_SID_MM - half)
    pixel = 2 * half * magnification * 1.02 / size
    return [
        carm_view(
            primary,
            0.0,
            source_to_isocenter_mm=_SID_MM,
            source_to_detector_mm=_SDD_MM,
            pixel_mm=pixel,
            shape=(size, size),
            isocenter=volume.center,
        )  # fmt: skip
        for primary in (0.0, 90.0)
    ]


def _windowed(drrs: np.ndarray, gamma: float = 1.6) -> np.ndarray:
    """Radiograph-like [0, 1] intensities of line integrals: x / (99.5th percentile), to the
    power `gamma`, so bone stands out of thick soft tissue (air black, bone white)."""
    x = np.asarray(drrs, dtype=np.float32)
    inside = x[x > 0.05]
    hi = float(np.percentile(inside, 99.5)) if inside.size else 1.0
    return np.clip(x / max(hi, 1e-6), 0.0, 1.0) ** gamma


def draw_phantoms(volumes, out, titles=None, size: int = 160, dpi: int = 100) -> Path:
    """Write a PNG grid of DRRs: one column per volume, AP view on top, lateral below.

    Each view is labelled with the patient directions at its edges (see `draw_labelled_drr`);
    bone shows bright: the line integrals x are shown as (x / x_max) ** 1.6, x_max the 99.5th
    percentile of the volume's two views (a knee does not wash out beside a hand).

    Args:
        volumes: `Volume`s in HU (e.g. from `make_phantom`), at most 12.
        out: PNG path (parent folders are created).
        titles: one title per volume (default: each volume's `source`).
        size: detector side of each DRR, pixels.
        dpi: resolution of the PNG.

    Returns:
        `out` as a Path.
    """
    from drrgen.projector import project

    volumes = list(volumes)
    if not 1 <= len(volumes) <= 12:
        raise ValueError(f"draw_phantoms: need 1 to 12 volumes, got {len(volumes)}")
    titles = [v.source for v in volumes] if titles is None else list(titles)
    drrs, views = [], []
    for vol in volumes:
        mu = vol.to_mu()
        for view in phantom_views(vol, size):
            drrs.append(project(mu, view))
            views.append(view)
    n = len(volumes)
    fig, axes = figure.subplots(2, n, figsize=(2.3 * n, 5.4), squeeze=False)
    for col, title in enumerate(titles):
        for row, name in enumerate(("AP", "lateral")):
            i = 2 * col + row
            label = f"{title}\n{name}" if row == 0 else name
            shown = _windowed(np.stack(drrs[2 * col : 2 * col + 2]))[row]
            # draw_labelled_drr shows 1 - exp(-x / scale): hand it -log(1 - shown), scale 1.
            x = -np.log1p(-np.minimum(shown, 1 - 1e-6))
            draw_labelled_drr(axes[row, col], x, views[i], label, scale=1.0)
    fig.tight_layout()
    return figure.save(fig, out, dpi)


def draw_phantom_gallery(
    out,
    seed: int = 0,
    shape: tuple[int, int, int] = (128, 128, 160),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    devices: bool = True,
    size: int = 160,
    dpi: int = 100,
) -> Path:
    """`draw_phantoms` of one phantom per kind: seeds `seed`, `seed` + 1, ... numbered as in
    ``drrgen phantom --kind mixed`` (seed i has kind ``kind_of(i)``), then, with `devices`, the
    first seeds from `seed` on whose phantom has a cast and a metal implant.

    Args:
        out: PNG path.
        seed: first seed.
        shape, spacing_mm: the phantoms' grid (voxels i, j, k; mm).
        devices: add the cast and the implant columns.
        size, dpi: see `draw_phantoms`.

    Returns:
        `out` as a Path.
    """
    from drrgen.phantoms import KINDS, kind_of, make_phantom, phantom_layout

    chosen = [(kind_of(s), s, "") for s in range(seed, seed + len(KINDS))]
    if devices:
        for attr, what in (("cast", "cast"), ("metal", "plate")):
            for s in range(seed, seed + 2000):
                if getattr(phantom_layout(s, shape, spacing_mm, kind_of(s)), attr) is not None:
                    chosen.append((kind_of(s), s, f", {what}"))
                    break
    volumes = [make_phantom(s, shape=shape, spacing_mm=spacing_mm, kind=k) for k, s, _ in chosen]
    titles = [f"{k} seed={s}{extra}" for k, s, extra in chosen]
    return draw_phantoms(volumes, out, titles, size=size, dpi=dpi)
