"""CNN feature extractors: any timm model cut at one feature level, or a tiny conv stem.

Pretrained weights come only from a local file (``pretrained_file``), never from the network
(or, on request, from timm's hub: ``pretrained="timm"``). A file is loaded by name and shape
(`load_matching`); one that provides fewer than `MIN_MATCHED` of the model's tensors is refused
(a file of another architecture would otherwise leave the model at random initialisation), and
the model records what it got (`LoadedWeights`, shown in the run banner).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models import load_state_dict
from timm.models._manipulate import adapt_input_conv
from torch import nn

# A pretrained file must provide at least this fraction of the model's floating-point tensors
# (parameters and BatchNorm statistics). A file of the right architecture provides nearly all
# (a ViT checkpoint of other depth or a classifier head aside); one of another architecture
# or an xmatch checkpoint, next to none.
MIN_MATCHED = 0.5


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
    """Pretrained weights cannot be had (offline, unknown to the hub, a file that does not fit
    the model): a one-line user error."""


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}


@dataclass(frozen=True)
class LoadedWeights:
    """What a pretrained file gave a module.

    Attributes:
        file: the weights file.
        keys: the module's floating-point tensors (state-dict names) taken from the file.
        total: the module's floating-point tensors.
    """

    file: str
    keys: tuple[str, ...]
    total: int

    def __str__(self) -> str:
        return f"{self.file} ({len(self.keys)} of {self.total} tensors)"

    def within(self, module: nn.Module) -> LoadedWeights:
        """The same load as seen by `module` after parts of it were replaced (a new stem)."""
        own = _tensors(module)
        return LoadedWeights(self.file, tuple(k for k in self.keys if k in own), len(own))


def loaded_weights(model: nn.Module) -> LoadedWeights | None:
    """The `LoadedWeights` recorded by a submodule of `model` (None: no pretrained file)."""
    return next((m.loaded_weights for m in model.modules() if hasattr(m, "loaded_weights")), None)


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """A state dict from a local .safetensors / .pth / .bin file (timm's reader: it unwraps
    ``state_dict`` / ``model`` entries and DDP's ``module.`` prefixes).

    Raises:
        PretrainedWeightsError: the file cannot be read as a state dict (names it).
    """
    try:
        return load_state_dict(str(file), weights_only=True)
    except Exception as err:  # torch, safetensors and pickle raise many types
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise PretrainedWeightsError(
            f"model.pretrained_file {file}: cannot read a state dict ({type(err).__name__}: "
            f"{first})"
        ) from None


def _mismatch(report: LoadedWeights, own: dict, state: dict) -> str:
    """One line: how little matched, the first model tensors not found, the file's keys."""
    missing = [k for k in own if k not in report.keys][:3]
    shown = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" if k in state else k
        for k in missing
    ]
    held = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]
    hint = ""
    if any(k.startswith("encoder.") for k in state):
        hint = " (an xmatch checkpoint, not timm weights: fine-tuning takes a vit_s run as "
        hint += "model.init_from)"
    return (
        f"model.pretrained_file {report.file}: only {len(report.keys)} of the model's "
        f"{report.total} tensors match the file by name and shape (at least "
        f"{MIN_MATCHED:.0%} needed); not found: {', '.join(shown)}; the file holds "
        f"{', '.join(held[:3]) or 'no tensors'}{hint}; pass weights of this "
        "architecture, or model.pretrained_file=null for random initialisation"
    )


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], file) -> LoadedWeights:
    """Load the entries of `state` that match `module`'s by name and shape (the rest keep their
    initialisation) and report how many did.

    Raises:
        PretrainedWeightsError: fewer than `MIN_MATCHED` of the module's tensors matched
            (names the file, the first tensors not found and the file's first keys).
    """
    own = module.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    floats = _tensors(module)
    report = LoadedWeights(str(file), tuple(k for k in floats if k in take), len(floats))
    if len(report.keys) < MIN_MATCHED * report.total:
        raise PretrainedWeightsError(_mismatch(report, floats, state))
    module.load_state_dict(take, strict=False)
    return report


def load_backbone_weights(body: nn.Module, file: Path) -> LoadedWeights:
    """Load a timm model's weights file into a timm `features_only` model, adapting the first
    convolution to the model's input channels (as timm does: RGB summed for one channel)."""
    state = read_weights(file)
    first = f"{(getattr(body, 'pretrained_cfg', None) or {}).get('first_conv')}.weight"
    own = body.state_dict()
    if first in state and first in own and state[first].ndim == 4:
        in_chans = own[first].shape[1]
        if state[first].shape[1] != in_chans:
            state[first] = adapt_input_conv(in_chans, state[first])
    return load_matching(body, state, file)


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
        pretrained_file: local weights file (.safetensors, .pth, .bin) of the timm model or
            None (random init); see `load_backbone_weights`.

    Attributes:
        loaded_weights: what `pretrained_file` provided (`LoadedWeights`; only with a file).
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
        if pretrained == "timm" and file is None:
            self.body = hub_model(name, **kwargs)
        else:
            self.body = timm.create_model(name, **kwargs)
        if file is not None:
            self.loaded_weights = load_backbone_weights(self.body, file)
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
