"""Realistic X-ray rendering of stored line integrals, batch-wise in torch (training and eval).

One store of line integrals ``L`` (dimensionless, ``L = integral of mu``) serves plain and
realistic training: this module turns a batch of views into images that look more like what a
CR/DX detector delivers, each effect separately switchable in `XrayConfig` (``data.xray``).
Off by default (``enabled: false``): existing runs and tests are unchanged.

Per view, in this order (counts are photons per detector pixel):
    1. bone-weighted look (option, probability ``bone_weight``): ``L <- L * sigmoid(10 (L /
       L99 - c))`` with ``L99`` the view's 99th percentile of L and c drawn from
       ``bone_center``. It suppresses thin (soft-tissue) paths and keeps dense ones: the
       projection-domain stand-in for the paper's official code, which weights the CT by a
       sigmoid of HU (centre +500 HU) *before* projecting (impossible from line integrals).
    2. spectrum: ``L <- k L``, k from ``mu_scale`` (harder beam: smaller effective mu).
    3. exposure field ``F`` (1 inside): heel-effect gradient ``1 + h (x cos t + y sin t)``
       (x, y in [-1, 1], h from U(0, ``heel``), t uniform) times the collimation mask
       (probability ``collimation``: an axis-aligned field keeping a fraction ``field`` of
       each side, zero outside: intensity only, no geometry change).
    4. Beer-Lambert primary ``I = I0 F exp(-L)`` with I0 the dose (log-uniform in ``dose``,
       counts per pixel of the open beam).
    5. scatter: ``I <- I + s lowpass(I)``, s (scatter-to-primary ratio) from ``scatter``;
       the low-pass is a mean over cells ``scatter_scale`` x the side, bilinearly upsampled;
       then the burnt-in marker ``I <- I (1 - M)``: an opaque lead letter L or R on the
       detector (PIL's default font, probability ``markers``, in a corner of the field).
    6. detector blur: Gaussian, sigma (pixels of the store image) from ``blur``.
    7. noise: Poisson quantum noise (Gaussian approximation, variance = counts) plus
       electronic Gaussian noise (std in counts from ``electronic_noise``); ``dose`` (0, 0)
       turns both off.
    8. log transform as the detector delivers: ``P = -log(max(I, 0.5) / I0)`` (flat field by
       the nominal open-beam dose: the heel gradient and scatter stay visible).
    9. window: ``clip((P - p_lo) / (p_hi - p_lo), 0, 1)`` with percentiles drawn from
       ``window_low`` / ``window_high`` (percent), estimated inside the collimated field
       only (as exposure recognition does), then gamma ``img ** g`` with log g uniform in
       ``[log gamma[0], log gamma[1]]``, then CLAHE (option, probability ``clahe``: tiles
       ``clahe_tiles`` x ``clahe_tiles``, clip limit ``clahe_clip`` x the uniform bin count).

Output: (V, 1, H, W) float32 in [0, 1], bright = attenuating, as `batch.display`.

Randomness: each view's parameters come from ``numpy.random.default_rng(entropy_row)`` (all
parameters are drawn whatever is switched on, so turning one effect off leaves the others'
draws unchanged) and its noise from a torch generator seeded from that rng: a view renders
the same whatever batch it is in (up to the convolutions' float rounding, about 1e-7).
Training draws one entropy word per view in the DataLoader worker (``xray_seed``, new every
epoch); validation and ``xmatch eval --render realistic`` use ``[render_seed, store, sample,
i, j, view]`` (fixed test pairs).

Correspondence: nothing here moves pixels, so ``corr`` stays valid. Patches outside the
collimated field keep their target: the geometry is unchanged and the evaluation truth is the
unmasked matrix, so a model must still infer them (from the visible anatomy and the learnt
layout prior); zeroing them would teach that collimated regions never match, which no
evaluation assumes. `field_fraction` gives each patch's exposed fraction for a masked loss.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class XrayConfig:
    """Realistic rendering (``data.xray``); ranges are ``[low, high]`` drawn uniformly per view.

    Attributes:
        enabled: render realistically (else the plain `batch.display`).
        render_seed: seed of the fixed renderings of validation / evaluation pairs.
        bone_weight: probability of the bone-weighted look (0: off).
        bone_center: sigmoid centre as a fraction of the view's 99th percentile of L.
        mu_scale: effective attenuation scale k (spectrum); (1, 1): off.
        dose: open-beam counts per pixel, log-uniform; (0, 0): no noise.
        electronic_noise: std of the additive detector noise, counts.
        blur: detector blur sigma, pixels of the store image; (0, 0): off.
        scatter: scatter-to-primary ratio; (0, 0): off.
        scatter_scale: low-pass cell size as a fraction of the image side, in (0, 1].
        heel: largest relative heel-effect change from the centre to an edge (0: off).
        collimation: probability of a collimation mask (0: off).
        field: fraction of each side inside the collimated field, in (0, 1].
        markers: probability of a burnt-in L/R marker (0: off).
        marker_size: letter height as a fraction of the image side.
        window_low, window_high: window percentiles (percent), in [0, 100].
        gamma: gamma range (log-uniform), > 0; (1, 1): off.
        clahe: probability of CLAHE (0: off).
        clahe_clip: CLAHE clip limit, multiples of the uniform bin count (> 1).
        clahe_tiles: CLAHE tiles per side (must divide the image side).
    """

    enabled: bool = False
    render_seed: int = 0
    bone_weight: float = 0.0
    bone_center: tuple[float, float] = (0.3, 0.6)
    mu_scale: tuple[float, float] = (0.8, 1.2)
    dose: tuple[float, float] = (1000.0, 100000.0)
    electronic_noise: tuple[float, float] = (0.0, 3.0)
    blur: tuple[float, float] = (0.3, 1.2)
    scatter: tuple[float, float] = (0.0, 0.4)
    scatter_scale: float = 0.125
    heel: float = 0.15
    collimation: float = 0.5
    field: tuple[float, float] = (0.65, 0.95)
    markers: float = 0.5
    marker_size: tuple[float, float] = (0.08, 0.14)
    window_low: tuple[float, float] = (0.0, 2.0)
    window_high: tuple[float, float] = (98.0, 99.5)
    gamma: tuple[float, float] = (0.7, 1.4)
    clahe: float = 0.0
    clahe_clip: float = 2.0
    clahe_tiles: int = 8


def problems(cfg: XrayConfig) -> list[str]:
    """``key: must be ..., got ...`` for every out-of-range setting of `cfg` (empty: fine)."""
    out = []

    def need(key: str, ok: bool, must: str) -> None:
        if not ok:
            out.append(f"{key}: must be {must}, got {getattr(cfg, key)!r}")

    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple):
            need(f.name, v[0] <= v[1], "a range [low, high] with low <= high")
    for key in ("bone_weight", "collimation", "markers", "clahe"):
        need(key, 0 <= getattr(cfg, key) <= 1, "a probability in [0, 1]")
    need("mu_scale", cfg.mu_scale[0] > 0, "> 0")
    need("dose", cfg.dose[0] > 0 or cfg.dose == (0.0, 0.0), "> 0 counts, or [0, 0] (no noise)")
    need("electronic_noise", cfg.electronic_noise[0] >= 0, ">= 0")
    need("blur", 0 <= cfg.blur[0] and cfg.blur[1] <= 8, "within [0, 8] pixels")
    need("scatter", cfg.scatter[0] >= 0, ">= 0")
    need("scatter_scale", 0 < cfg.scatter_scale <= 1, "in (0, 1]")
    need("heel", 0 <= cfg.heel < 1, "in [0, 1)")
    need("field", 0 < cfg.field[0] and cfg.field[1] <= 1, "within (0, 1]")
    need("marker_size", 0 < cfg.marker_size[0] and cfg.marker_size[1] <= 0.5, "within (0, 0.5]")
    need("bone_center", 0 < cfg.bone_center[0] and cfg.bone_center[1] < 1, "within (0, 1)")
    for key in ("window_low", "window_high"):
        r = getattr(cfg, key)
        need(key, 0 <= r[0] and r[1] <= 100, "percentiles within [0, 100]")
    need("window_high", cfg.window_low[1] < cfg.window_high[0], "above window_low")
    need("gamma", cfg.gamma[0] > 0, "> 0")
    need("clahe_clip", cfg.clahe_clip > 1, "> 1")
    need("clahe_tiles", 1 <= cfg.clahe_tiles <= 32, "in [1, 32]")
    return out


# ---------------------------------------------------------------------------- parameters


def draw_params(entropy: np.ndarray, cfg: XrayConfig) -> dict[str, torch.Tensor]:
    """Per-view parameters from (V, K) int entropy rows: {name: (V,) float32 tensor}.

    Every parameter is drawn for every view in a fixed order (a switched-off effect keeps its
    draw but is not applied), so switching one effect leaves the others unchanged.
    """
    rows, seeds = [], []
    for row in np.asarray(entropy, dtype=np.int64).reshape(len(entropy), -1):
        rng = np.random.default_rng([int(x) & 0xFFFFFFFFFFFFFFFF for x in row])
        rows.append(rng.random(21))  # fixed count: the order below never shifts
        seeds.append(rng.integers(2**62))
    u = np.stack(rows) if rows else np.zeros((0, 21))

    def rng_(r, x):  # uniform in the range r
        return r[0] + (r[1] - r[0]) * x

    def logu(r, x):  # log-uniform in the range r
        return np.exp(np.log(r[0]) + (np.log(r[1]) - np.log(r[0])) * x) if r[0] > 0 else x * 0

    p = dict(
        bone=(u[:, 0] < cfg.bone_weight).astype(np.float32),
        bone_center=rng_(cfg.bone_center, u[:, 1]),
        mu_scale=rng_(cfg.mu_scale, u[:, 2]),
        dose=logu(cfg.dose, u[:, 3]),
        electronic=rng_(cfg.electronic_noise, u[:, 4]),
        blur=rng_(cfg.blur, u[:, 5]),
        scatter=rng_(cfg.scatter, u[:, 6]),
        heel=cfg.heel * u[:, 7],
        heel_angle=2 * np.pi * u[:, 8],
        collimate=(u[:, 9] < cfg.collimation).astype(np.float32),
        field_h=rng_(cfg.field, u[:, 10]),
        field_w=rng_(cfg.field, u[:, 11]),
        field_y=u[:, 12],  # where the field sits in the free margin, 0..1
        field_x=u[:, 13],
        marker=(u[:, 14] < cfg.markers).astype(np.float32),
        marker_size=rng_(cfg.marker_size, u[:, 15]),
        marker_corner=np.floor(u[:, 16] * 8),  # 4 corners x 2 letters
        window_low=rng_(cfg.window_low, u[:, 17]),
        window_high=rng_(cfg.window_high, u[:, 18]),
        gamma=logu(cfg.gamma, u[:, 19]),
    )
    p["clahe"] = (u[:, 20] < cfg.clahe).astype(np.float32)
    out = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in p.items()}
    out["noise_seed"] = torch.as_tensor(np.array(seeds, dtype=np.int64))
    return out


def _col(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(V,) -> (V, 1, 1, 1) on `like`'s device and dtype."""
    return x.to(like.device, like.dtype).view(-1, 1, 1, 1)


# ---------------------------------------------------------------------------- effects


def beer_lambert(line_integral: torch.Tensor, i0: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Counts ``I = I0 exp(-L)``: (V, 1, H, W) line integrals, I0 a scalar or (V,) dose."""
    i0 = _col(torch.as_tensor(i0).expand(line_integral.shape[0]), line_integral)
    return i0 * torch.exp(-line_integral)


def log_transform(counts: torch.Tensor, i0: torch.Tensor | float = 1.0, floor: float = 0.5):
    """The detector's log conversion ``-log(max(I, floor) / I0)`` of (V, 1, H, W) counts."""
    i0 = _col(torch.as_tensor(i0).expand(counts.shape[0]), counts)
    return -torch.log(counts.clamp_min(floor) / i0)


def bone_weighted(line_integral: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``L sigmoid(10 (L / L99 - c))`` per view: thin paths suppressed, dense kept."""
    v = line_integral.shape[0]
    l99 = torch.quantile(line_integral[:, :, ::4, ::4].reshape(v, -1), 0.99, dim=1)
    scale = _col(l99.clamp_min(1e-6), line_integral)
    return line_integral * torch.sigmoid(10 * (line_integral / scale - _col(center, line_integral)))


def _unit_grid(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, H, 1) rows and (1, 1, 1, W) columns in [-1, 1] (pixel centres)."""
    y = torch.linspace(-1, 1, h, device=device).view(1, 1, h, 1)
    x = torch.linspace(-1, 1, w, device=device).view(1, 1, 1, w)
    return y, x


def heel_field(shape, strength: torch.Tensor, angle: torch.Tensor, device="cpu") -> torch.Tensor:
    """(V, 1, H, W) relative intensity ``1 + h (x cos t + y sin t)`` (h, t: (V,))."""
    _, _, h, w = shape
    y, x = _unit_grid(h, w, device)
    s, a = strength.to(device, torch.float32), angle.to(device, torch.float32)
    ramp = x * _col(torch.cos(a), x) + y * _col(torch.sin(a), y)
    return 1 + _col(s, ramp) * ramp


def collimation_mask(shape, params: dict, device="cpu") -> torch.Tensor:
    """(V, 1, H, W) 1 inside the collimated field, 0 outside (1 everywhere when not drawn).

    The field is axis-aligned (straight edges), ``field_h`` x ``field_w`` of the sides, placed
    at ``field_y`` / ``field_x`` (0..1) of the free margin.
    """
    _, _, h, w = shape
    rows = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1) + 0.5
    cols = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w) + 0.5
    top, bottom, left, right = field_box(params, h, w)
    inside = (rows >= _col(top, rows)) & (rows < _col(bottom, rows))
    inside = inside & (cols >= _col(left, cols)) & (cols < _col(right, cols))
    on = _col(params["collimate"], rows) > 0.5
    return torch.where(on, inside.float(), torch.ones_like(inside, dtype=torch.float32))


def field_box(params: dict, h: int, w: int) -> tuple[torch.Tensor, ...]:
    """(top, bottom, left, right) pixel edges (V,) of the collimated field (whole image if
    not collimated)."""
    on = params["collimate"].float() > 0.5
    fh = torch.where(on, params["field_h"].float(), torch.ones_like(on, dtype=torch.float32))
    fw = torch.where(on, params["field_w"].float(), torch.ones_like(on, dtype=torch.float32))
    top = (1 - fh) * h * params["field_y"].float()
    left = (1 - fw) * w * params["field_x"].float()
    return top, top + fh * h, left, left + fw * w


@functools.lru_cache(maxsize=1)
def _glyphs() -> torch.Tensor:
    """(2, 1, 32, 32) float32 masks in [0, 1] of the letters L and R, centred (PIL's default
    font: its scalable FreeType face at 48 px where Pillow has FreeType, else its bitmap)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=48)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: the bitmap font
        font = ImageFont.load_default()
    out = []
    for letter in "LR":
        img = Image.new("L", (96, 96), 0)
        draw = ImageDraw.Draw(img)
        box = draw.textbbox((0, 0), letter, font=font)
        draw.text((-box[0], -box[1]), letter, fill=255, font=font)
        arr = np.asarray(img, dtype=np.float32)[: box[3] - box[1], : box[2] - box[0]] / 255
        side = max(arr.shape) + 2  # square canvas, letter centred, one-pixel margin
        canvas = np.zeros((side, side), np.float32)
        r0, c0 = (side - arr.shape[0]) // 2, (side - arr.shape[1]) // 2
        canvas[r0 : r0 + arr.shape[0], c0 : c0 + arr.shape[1]] = arr
        t = F.adaptive_avg_pool2d(torch.from_numpy(canvas)[None, None], (32, 32))
        out.append((2 * t[0]).clamp(0, 1))  # thin strokes stay opaque after the pooling
    return torch.stack(out)


def marker_mask(shape, params: dict, device="cpu") -> torch.Tensor:
    """(V, 1, H, W) in [0, 1]: an L or R letter in a corner of the collimated field (0
    where no marker is drawn). ``marker_corner`` 0..7 picks the letter (even L, odd R) and the
    corner (value // 2: top-left, top-right, bottom-left, bottom-right)."""
    v, _, h, w = shape
    if v == 0:
        return torch.zeros(shape, device=device)
    code = params["marker_corner"].long()
    glyph = _glyphs().to(device)[code % 2]  # (V, 1, 32, 32)
    top, bottom, left, right = field_box(params, h, w)
    size = params["marker_size"].float() * h  # letter height in pixels
    margin = 0.04 * h + size / 2
    corner = code // 2
    cy = torch.where(corner < 2, top + margin, bottom - margin)  # centre, pixels
    cx = torch.where(corner % 2 == 0, left + margin, right - margin)
    # affine_grid maps output coords in [-1, 1] to glyph coords in [-1, 1].
    sy, sx = size / h, size / w
    ny, nx = 2 * cy / h - 1, 2 * cx / w - 1
    theta = torch.zeros(v, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = 1 / sx, -nx / sx
    theta[:, 1, 1], theta[:, 1, 2] = 1 / sy, -ny / sy
    grid = F.affine_grid(theta.to(device), [v, 1, h, w], align_corners=False)
    mask = F.grid_sample(glyph, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return mask * _col(params["marker"], mask)


def lowpass(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Scatter-like low frequencies of (V, 1, H, W): means over cells `scale` x the side,
    bilinearly upsampled (the image mean is kept up to border effects)."""
    h, w = x.shape[-2:]
    cells = max(1, round(1 / scale))
    small = F.adaptive_avg_pool2d(x, (cells, cells))
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, smax: float | None = None):
    """Separable Gaussian blur of (V, 1, H, W) with per-view sigma (V,) in pixels (0: none);
    kernels sum to 1 and borders are reflected, so the mean is kept. The kernel radius is
    3 `smax` (default: the largest sigma; pass the range's top so that a view's result does
    not depend on its batch)."""
    v, _, h, w = x.shape
    smax = (float(sigma.max()) if v else 0.0) if smax is None else smax
    if smax <= 0 or v == 0:
        return x
    radius = min(max(1, math.ceil(3 * smax)), (min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = _col(sigma, x).view(v, 1).clamp_min(1e-3)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (V, 2r + 1)
    y = F.pad(x.reshape(1, v, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(v, 1, 1, -1), groups=v)
    y = F.conv2d(y, k.view(v, 1, -1, 1), groups=v)
    return y.view(v, 1, h, w)


def add_noise(counts: torch.Tensor, electronic: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Poisson (Gaussian approximation, variance = counts) plus electronic Gaussian noise
    (std `electronic`, (V,)) on (V, 1, H, W) counts; view v's noise from generator seeds[v]."""
    v = counts.shape[0]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]
    z = torch.stack([torch.randn((2, *counts.shape[1:]), generator=g) for g in gens]) if v else None
    if z is None:
        return counts
    z = z.to(counts.device, counts.dtype)  # (V, 2, 1, H, W)
    quantum = counts.clamp_min(0).sqrt() * z[:, 0]
    return counts + quantum + _col(electronic, counts) * z[:, 1]


def window(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, mask=None, stride: int = 4):
    """Per-view percentile window of (V, 1, H, W) into [0, 1]; percentiles (V,) in percent,
    estimated on every `stride`-th pixel where `mask` (V, 1, H, W) > 0.5 (all when None)."""
    v = x.shape[0]
    sub = x[:, :, ::stride, ::stride].reshape(v, -1)
    if mask is None:
        valid = torch.ones_like(sub, dtype=torch.bool)
    else:
        valid = mask[:, :, ::stride, ::stride].reshape(v, -1) > 0.5
    n = valid.sum(dim=1).clamp_min(1)
    srt = torch.where(valid, sub, torch.full_like(sub, float("inf"))).sort(dim=1).values

    def pick(pct):
        idx = ((pct.to(x.device).float() / 100) * (n - 1).float()).round().long()
        return srt.gather(1, idx.view(-1, 1)).view(-1, 1, 1, 1)

    lo, hi = pick(low), pick(high)
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


def clahe(x: torch.Tensor, tiles: int = 8, clip: float = 2.0, bins: int = 64) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of (V, 1, H, W) images in [0, 1].

    Histograms of ``tiles`` x ``tiles`` tiles with `bins` bins, clipped at `clip` x the
    uniform count (the excess spread evenly), their CDFs bilinearly interpolated between tile
    centres (Zuiderveld 1994). H and W must be divisible by `tiles`.
    """
    v, _, h, w = x.shape
    if h % tiles or w % tiles:
        raise ValueError(f"clahe_tiles {tiles} must divide the image side {h}x{w}")
    th, tw = h // tiles, w // tiles
    b = (x.clamp(0, 1) * (bins - 1)).round().long().view(v, tiles, th, tiles, tw)
    b = b.permute(0, 1, 3, 2, 4).reshape(v, tiles, tiles, th * tw)
    hist = torch.zeros(v, tiles, tiles, bins, device=x.device).scatter_add_(
        -1, b, torch.ones_like(b, dtype=torch.float32)
    )
    limit = clip * th * tw / bins
    excess = (hist - limit).clamp_min(0).sum(-1, keepdim=True)
    hist = hist.clamp_max(limit) + excess / bins
    cdf = (hist.cumsum(-1) / (th * tw)).clamp(0, 1)  # (V, T, T, bins)
    # Tile-centre coordinates of every pixel; the 4 surrounding tiles' mappings mixed.
    ty = ((torch.arange(h, device=x.device) + 0.5) / th - 0.5).clamp(0, tiles - 1)
    tx = ((torch.arange(w, device=x.device) + 0.5) / tw - 0.5).clamp(0, tiles - 1)
    y0, x0 = ty.floor().long(), tx.floor().long()
    y1, x1 = (y0 + 1).clamp_max(tiles - 1), (x0 + 1).clamp_max(tiles - 1)
    wy, wx = (ty - y0).view(1, h, 1), (tx - x0).view(1, 1, w)
    px = (x.clamp(0, 1) * (bins - 1)).round().long().view(v, h, w)
    flat = cdf.reshape(v, -1)

    def look(yi, xi):
        idx = (yi.view(1, h, 1) * tiles + xi.view(1, 1, w)) * bins + px
        return flat.gather(1, idx.view(v, -1)).view(v, h, w)

    top = look(y0, x0) * (1 - wx) + look(y0, x1) * wx
    bottom = look(y1, x0) * (1 - wx) + look(y1, x1) * wx
    return (top * (1 - wy) + bottom * wy).view(v, 1, h, w)


# ---------------------------------------------------------------------------- all together


def _on_subset(x: torch.Tensor, chosen: torch.Tensor, fn) -> torch.Tensor:
    """`x` (V, ...) with ``fn(x[idx], idx)`` in the views where `chosen` (V,) > 0.5."""
    idx = torch.nonzero(chosen > 0.5).flatten()
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx.to(x.device)] = fn(x[idx.to(x.device)], idx)
    return out


def render(line_integral: torch.Tensor, entropy: np.ndarray, cfg: XrayConfig) -> torch.Tensor:
    """(V, 1, H, W) line integrals -> (V, 1, H, W) float32 realistic images in [0, 1].

    Args:
        line_integral: stored DRRs (dimensionless), any float dtype, any device.
        entropy: (V, K) integers: each view's seed words (see the module docstring).
        cfg: which effects, which ranges.
    """
    x = line_integral.float().clamp_min(0)
    dev = x.device
    p = draw_params(entropy, cfg)
    x = _on_subset(x, p["bone"], lambda sel, idx: bone_weighted(sel, p["bone_center"][idx]))
    x = x * _col(p["mu_scale"], x)
    noisy = cfg.dose[1] > 0
    i0 = p["dose"] if noisy else torch.ones(x.shape[0], dtype=torch.float64)
    field = heel_field(x.shape, p["heel"], p["heel_angle"], dev)
    exposed = collimation_mask(x.shape, p, dev)
    counts = beer_lambert(x, i0) * field * exposed
    if cfg.scatter[1] > 0:
        counts = counts + _col(p["scatter"], x) * lowpass(counts, cfg.scatter_scale)
    if cfg.markers > 0 and bool((p["marker"] > 0.5).any()):  # on the detector: blocks scatter
        counts = counts * (1 - marker_mask(x.shape, p, dev))
    counts = gaussian_blur(counts, p["blur"], cfg.blur[1])
    if noisy:
        counts = add_noise(counts, p["electronic"], p["noise_seed"])
    proj = log_transform(counts, i0, floor=0.5 if noisy else 1e-6)
    img = window(proj, p["window_low"], p["window_high"], exposed)
    img = img.clamp_min(1e-6) ** _col(p["gamma"], img)
    img = _on_subset(img, p["clahe"], lambda sel, _: clahe(sel, cfg.clahe_tiles, cfg.clahe_clip))
    return img.clamp(0.0, 1.0)


def field_fraction(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(V, 1, H, W) collimation mask -> (V, N) exposed fraction of each patch (row-major)."""
    return F.adaptive_avg_pool2d(mask, grid).flatten(1)


def eval_entropy(info: torch.Tensor, seed: int) -> np.ndarray:
    """(2B, 6) seed words ``[seed, store, sample, i, j, view]`` of a batch's views from its
    (B, 5) ``info`` (i, j, volume id, store, sample): fixed renderings of fixed pairs."""
    info = np.asarray(info.cpu() if isinstance(info, torch.Tensor) else info, dtype=np.int64)
    b = info.shape[0]
    rows = np.empty((b, 2, 6), dtype=np.int64)
    rows[:, :, 0] = seed
    rows[:, :, 1] = info[:, None, 3]
    rows[:, :, 2] = info[:, None, 4]
    rows[:, :, 3] = info[:, None, 0]
    rows[:, :, 4] = info[:, None, 1]
    rows[:, :, 5] = np.arange(2)
    return rows.reshape(2 * b, 6)
