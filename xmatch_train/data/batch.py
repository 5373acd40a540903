"""The device side of the input pipeline: display transform, photometric augmentation, resize.

DataLoader workers only read shards and move pixels (pair choice, flips, C permutations) and
ship float16 line integrals; the per-pixel arithmetic runs here, batch-wise in torch on the
training device (a GPU does it for free; the 2-core CPU loader would not keep up with it).
The arithmetic is that of `transforms.to_display` and `transforms.photometric`; with
``xray.enabled`` the display transform is replaced by the realistic renderer
(`xmatch_train.data.xray.render`, at the store's resolution, before the resize), seeded per
view by the batch's ``xray_seed`` (B, 2) when the worker drew one (training), else by
``[xray.render_seed, store, sample, i, j, view]`` (validation, evaluation: fixed renderings).

Input batch (from `PairStream`, see its item layout): ``drr`` (B, 2, H, W) float16,
``photo`` (B, 2, 3), ``corr_0to1`` (B, N, N) float16, ``info`` (B, 5) and optionally
``geometry`` (B, 2, 12). Output, LightGlue-style, on `device`: ``view0``, ``view1``
(B, 1, h, w) float32 images in [0, 1], ``corr_0to1`` (B, N, N) float32, ``pair`` (B, 2),
``volume_id``, ``store``, ``index`` (B,), and ``geometry0``, ``geometry1`` (B, 12) when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from xmatch_train.data.transforms import DisplayConfig
from xmatch_train.data.xray import XrayConfig, eval_entropy, render


def display(drr: torch.Tensor, cfg: DisplayConfig = DisplayConfig()) -> torch.Tensor:
    """(B, 1, H, W) line integrals -> (B, 1, H, W) float32 windowed images in [0, 1]."""
    x = drr.float()
    if cfg.mode == "absorbed":
        x = -torch.expm1(-x)
    elif cfg.mode != "log":
        raise ValueError(f"unknown display mode {cfg.mode!r}; expected 'log' or 'absorbed'")
    s = max(1, cfg.stride)
    sub = x[:, :, ::s, ::s].flatten(1)
    q = torch.tensor([cfg.low_pct / 100, cfg.high_pct / 100], device=x.device)
    lo, hi = torch.quantile(sub, q, dim=1).view(2, -1, 1, 1, 1)
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp_(0.0, 1.0)


def photometric(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply per-image (contrast, brightness, invert) `params` (B, 3) to (B, 1, h, w) images."""
    p = params.to(image.device, torch.float32).view(-1, 3, 1, 1, 1)
    out = ((image - 0.5) * p[:, 0] + 0.5 + p[:, 1]).clamp_(0.0, 1.0)
    return torch.where(p[:, 2] > 0.5, 1.0 - out, out)


@dataclass(frozen=True)
class BatchTransform:
    """Turn a loader batch into network inputs on a device.

    Attributes:
        display: line integral -> image settings.
        image_size: network input side; images are average-pooled by the integer factor
            store_size / image_size (None: keep the store's size).
        xray: realistic rendering (replaces `display` when enabled).
    """

    display: DisplayConfig = field(default_factory=DisplayConfig)
    image_size: int | None = None
    xray: XrayConfig = field(default_factory=XrayConfig)

    def factor(self, image_shape: tuple[int, int]) -> int:
        """The pooling factor for store images of `image_shape` (raises if not an integer)."""
        h, w = image_shape
        if self.image_size is None or self.image_size == h:
            return 1
        if h != w or h % self.image_size:
            raise ValueError(
                f"data.image_size {self.image_size} must divide the square store images "
                f"{image_shape}"
            )
        return h // self.image_size

    def __call__(self, batch: dict, device: torch.device | str = "cpu") -> dict:
        """The network-ready, unpacked batch on `device` (see the module docstring)."""
        drr = batch["drr"].to(device, non_blocking=True)
        b, _, h, w = drr.shape
        views = drr.reshape(2 * b, 1, h, w)
        if self.xray.enabled:
            if "xray_seed" in batch:  # training: drawn per item and epoch by the worker
                entropy = batch["xray_seed"].reshape(2 * b, 1).numpy()
            else:
                entropy = eval_entropy(batch["info"], self.xray.render_seed)
            img = render(views, entropy, self.xray)
        else:
            img = display(views, self.display)
        f = self.factor((h, w))
        if f > 1:
            img = F.avg_pool2d(img, f)
        img = photometric(img, batch["photo"].reshape(2 * b, 3)).view(b, 2, 1, *img.shape[-2:])
        info = batch["info"]
        out = {
            "view0": img[:, 0],
            "view1": img[:, 1],
            "corr_0to1": batch["corr_0to1"].to(device, non_blocking=True).float(),
            "pair": info[:, :2],
            "volume_id": info[:, 2],
            "store": info[:, 3],
            "index": info[:, 4],
        }
        if "geometry" in batch:
            out["geometry0"], out["geometry1"] = batch["geometry"][:, 0], batch["geometry"][:, 1]
        return out
