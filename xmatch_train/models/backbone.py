"""CNN feature extractors: any timm model cut at one feature level, or a tiny conv stem.

Pretrained weights come only from a local file (``pretrained_file``), never from the network.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn


def check_weights_file(path: str | Path | None) -> Path | None:
    """Return `path` as a Path, or raise FileNotFoundError naming it when it does not exist."""
    if path is None or str(path) == "":
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: pretrained weights file not found (weights are only read from local files; "
            "download them on a machine with network access, or set the option to null to "
            "start from random initialisation)"
        )
    return p


PRETRAINED = (None, "timm")


class PretrainedWeightsError(ValueError):
    """Pretrained weights cannot be had (offline, unknown to the hub): a one-line user error."""


def hub_model(name: str, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``: timm downloads the ImageNet weights from
    the Hugging Face hub (cached in ~/.cache/huggingface). Needs network access once.

    Raises:
        PretrainedWeightsError: one line naming the model when the download fails (offline,
            no such weights), with the local-file alternative.
    """
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # hub errors are many types (OSError, HTTP, LocalEntryNotFound)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PretrainedWeightsError(
            f"model.pretrained=timm: could not get ImageNet weights for '{name}' from the "
            f"Hugging Face hub (offline?): {first}; download them where there is network and "
            "pass model.pretrained_file=/path/to/weights.safetensors instead"
        ) from None


class TimmBackbone(nn.Module):
    """A timm model as a feature extractor (``features_only``) at one output level.

    Args:
        name: timm model name, e.g. ``resnet50`` (level 3 = after layer3: 1024 channels,
            stride 16) or ``resnet18`` (level 3: 256 channels, stride 16; level 2: stride 8).
        out_index: the feature level (``out_indices=(out_index,)``).
        in_chans: input channels (1 for X-rays; timm adapts pretrained first convolutions).
        pretrained_file: local weights file (.safetensors, .pth, .bin) or None (random init).
    """

    def __init__(
        self,
        name: str = "resnet50",
        out_index: int = 3,
        in_chans: int = 1,
        pretrained_file: str | Path | None = None,
        pretrained: str | None = None,
    ):
        super().__init__()
        file = check_weights_file(pretrained_file)
        kwargs = dict(features_only=True, out_indices=(out_index,), in_chans=in_chans)
        if file is not None:
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(file)))
            self.body = timm.create_model(name, **kwargs)
        elif pretrained == "timm":
            self.body = hub_model(name, **kwargs)
        else:
            self.body = timm.create_model(name, **kwargs)
        self.channels = int(self.body.feature_info.channels()[-1])
        self.stride = int(self.body.feature_info.reduction()[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, channels, H / stride, W / stride)."""
        return self.body(x)[-1]


class ConvStem(nn.Module):
    """A tiny CNN (stride 2 per stage) for tests and very small CPU runs.

    Args:
        widths: channels of the stages; the stride is 2 ** len(widths).
        in_chans: input channels.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64), in_chans: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, stride=2, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.body = nn.Sequential(*layers)
        self.channels = c
        self.stride = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, channels, H / stride, W / stride)."""
        return self.body(x)


def build_backbone(
    name: str,
    out_index: int = 3,
    in_chans: int = 1,
    pretrained_file: str | Path | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """``convstem`` (our tiny CNN, stride 16) or any timm model name (see `TimmBackbone`);
    ``pretrained="timm"`` downloads timm's ImageNet weights (`hub_model`)."""
    if pretrained not in PRETRAINED:
        raise ValueError(f"model.pretrained must be null or 'timm', got {pretrained!r}")
    if name == "convstem":
        if pretrained_file or pretrained:
            raise ValueError("backbone 'convstem' has no pretrained weights")
        return ConvStem(in_chans=in_chans)
    return TimmBackbone(name, out_index, in_chans, pretrained_file, pretrained)
