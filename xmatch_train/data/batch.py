"""The device side of the input pipeline: display transform, photometric augmentation, resize.

DataLoader workers only read shards and move pixels (pair choice, flips, C permutations) and
ship float16 line integrals; the per-pixel arithmetic runs here, batch-wise in torch on the
training device (a GPU does it for free; the 2-core CPU loader would not keep up with it).
The arithmetic is that of `transforms.to_display` and `transforms.photometric`.

Input batch (from `PairStream`): ``drr0``, ``drr1`` (B, 1, H, W) float16 line integrals,
``photo0``, ``photo1`` (B, 3) photometric parameters, ``corr_0to1`` (B, N, N) float16.
Output adds ``view0``, ``view1`` (B, 1, h, w) float32 images in [0, 1] and makes ``corr_0to1``
float32, all on `device`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from xmatch_train.data.transforms import DisplayConfig


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
    """

    display: DisplayConfig = field(default_factory=DisplayConfig)
    image_size: int | None = None

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
        """The batch with ``view0``, ``view1`` and float32 ``corr_0to1`` on `device`."""
        out = dict(batch)
        for k in (0, 1):
            drr = batch[f"drr{k}"].to(device, non_blocking=True)
            img = display(drr, self.display)
            f = self.factor(tuple(drr.shape[-2:]))
            if f > 1:
                img = F.avg_pool2d(img, f)
            out[f"view{k}"] = photometric(img, batch[f"photo{k}"])
        out["corr_0to1"] = batch["corr_0to1"].to(device, non_blocking=True).float()
        return out
