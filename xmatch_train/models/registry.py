"""Model registry: one small builder per variant, selected by ``model.name`` in the config.

Names: ``cnn``, ``superglue``, ``loftr``, ``transformer_mp``, ``transformer`` (CNN backbone +
attention module, the rows of the paper's Table 1) and ``vit_s`` (the fracture classifier's
ViT-S encoder trained on the same task). As in timm, each variant owns its sizes (`SIZES`): a
config leaves ``model.width`` etc. at null to take them, or sets them to change them;
`resolve_sizes` writes them into the config a run saves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import timm
import torch
from torch import nn

from xmatch_train.models.attention import ATTENTION
from xmatch_train.models.backbone import build_backbone
from xmatch_train.models.head import PriorMixtureHead
from xmatch_train.models.matcher import CNNAttentionEncoder, CorrespondenceModel, ViTPairEncoder
from xmatch_train.models.vit import VIT_S, build_vit

# The paper's sizes of the Table-1 attention modules (width, layers, heads, MLP). The CNN
# variants take their token grid from the backbone's stride; patch_size and stem are recorded
# at ViT-S's values only so that runs saved before variants owned their sizes still resume.
PAPER_SIZES = dict(width=512, depth=8, heads=8, mlp_dim=1024, patch_size=16, stem="patch")


@dataclass(frozen=True)
class ModelConfig:
    """Model choice and sizes.

    Attributes:
        name: registry name (see `MODELS`).
        backbone: timm model name or ``convstem`` (CNN variants).
        backbone_index: timm feature level (3 = stride 16 for ResNets).
        pretrained_file: local weights for the backbone (CNN variants) or the timm ViT
            (``vit_s``); None = random initialisation.
        pretrained: ``timm`` to download the backbone's ImageNet weights with timm (CNN
            variants; needs network access; a clear error when offline), or None.
        width, depth, heads, mlp_dim: token width D, attention layers, heads, MLP hidden
            width; null: the variant's (`SIZES`: 512/8/8/1024, the paper's, for the Table-1
            models; 384/6/4/1536 for ViT-S).
        dropout: dropout in the attention modules' MLPs.
        img_size: ViT input side in pixels.
        patch_size: ViT patch side in pixels (null: the variant's, 16 for ViT-S).
        stem: ViT patch embedding, ``patch`` (linear, the paper's) or ``conv`` (a small
            convolutional stem, `xmatch_train.models.vit.conv_stem`); null: the variant's.
        input_mean, input_std: image normalisation (x - mean) / std.
        head: ``cosine`` (the paper's squared cosine of L2-normalised descriptors, trained
            with MSE) or ``prior`` (`PriorMixtureHead`: learned geometric priors chosen by the
            images, patch gates and a bilinear term, trained with BCE).
        prior_components: K prior matrices of the ``prior`` head.
        grid: patches per side of the token grid (N = grid^2) for the ``prior`` head; null:
            the training store's patch grid (`xmatch pretrain` reads it from the store).
    """

    name: str = "transformer"
    backbone: str = "resnet50"
    backbone_index: int = 3
    pretrained_file: str | None = None
    pretrained: str | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    dropout: float = 0.0
    img_size: int = 256
    patch_size: int | None = None
    stem: str | None = None
    input_mean: float = 0.45
    input_std: float = 0.225
    head: str = "cosine"
    prior_components: int = 16
    grid: int | None = None


MODELS: dict[str, Callable[[ModelConfig], CorrespondenceModel]] = {}
SIZES: dict[str, dict] = {}


def register(name: str, sizes: dict):
    """Decorator adding a builder ``fn(cfg) -> CorrespondenceModel`` under `name`, with the
    variant's own sizes (`ModelConfig` fields a config leaves at null)."""

    def deco(fn):
        MODELS[name] = fn
        SIZES[name] = dict(sizes)
        return fn

    return deco


def resolve_sizes(cfg: ModelConfig, grid: int | None = None) -> ModelConfig:
    """`cfg` with every size left at null set to its variant's, and ``grid`` (when null) to
    `grid` (the store's patch grid). Unknown names are left for `check_config` to report."""
    own = {k: v for k, v in SIZES.get(cfg.name, {}).items() if getattr(cfg, k) is None}
    if cfg.grid is None and grid is not None:
        own["grid"] = int(grid)
    return replace(cfg, **own) if own else cfg


HEADS = ("cosine", "prior")


def _head(cfg: ModelConfig) -> nn.Module | None:
    if cfg.head not in HEADS:
        raise ValueError(f"unknown model.head {cfg.head!r}; choose one of {', '.join(HEADS)}")
    if cfg.head == "cosine":
        return None
    if cfg.grid is None:
        raise ValueError("model.grid: the prior head needs the patch grid (patches per side)")
    return PriorMixtureHead(cfg.width, cfg.grid * cfg.grid, cfg.prior_components)


def _feature_levels(name: str) -> int | None:
    """How many feature levels timm's `name` has (built on the meta device: no memory, no
    weights); None when that cannot be told this way."""
    try:
        with torch.device("meta"):
            body = timm.create_model(name, features_only=True, pretrained=False)
    except Exception:  # the real build reports the problem
        return None
    return len(body.feature_info)


def _cnn_attention(cfg: ModelConfig) -> CorrespondenceModel:
    backbone = build_backbone(
        cfg.backbone, cfg.backbone_index, 1, cfg.pretrained_file, cfg.pretrained
    )
    attention = ATTENTION[cfg.name](
        dim=cfg.width, depth=cfg.depth, heads=cfg.heads, mlp_dim=cfg.mlp_dim, dropout=cfg.dropout
    )
    encoder = CNNAttentionEncoder(backbone, attention, cfg.width, cfg.heads)
    return CorrespondenceModel(encoder, cfg.width, cfg.input_mean, cfg.input_std, _head(cfg))


for _name in ATTENTION:
    register(_name, PAPER_SIZES)(_cnn_attention)


@register("vit_s", VIT_S)
def _vit_s(cfg: ModelConfig) -> CorrespondenceModel:
    if cfg.pretrained:
        raise ValueError(
            "model.pretrained=timm is for the CNN backbones; for vit_s pass a local timm ViT "
            "checkpoint as model.pretrained_file"
        )
    sizes = {k: getattr(cfg, k) for k in VIT_S}
    vit = build_vit(cfg.img_size, sizes, pretrained_file=cfg.pretrained_file)
    encoder = ViTPairEncoder(vit)
    return CorrespondenceModel(encoder, cfg.width, cfg.input_mean, cfg.input_std, _head(cfg))


def build_model(cfg: ModelConfig) -> CorrespondenceModel:
    """Build the variant `cfg.name`.

    Raises:
        ValueError: unknown name (the message lists the registry).
        FileNotFoundError: `cfg.pretrained_file` does not exist.
    """
    cfg = resolve_sizes(cfg)
    check_config(cfg)
    return MODELS[cfg.name](cfg)


def model_from_checkpoint(cfg: ModelConfig, state: dict, where: str | Path) -> CorrespondenceModel:
    """The trained model of a run: built from its `cfg` without any pretrained file (the
    checkpoint holds every weight; that file may be gone) and loaded with `state`.

    Raises:
        ValueError: the weights do not fit the model (names `where`, the checkpoint).
    """
    model = build_model(replace(cfg, pretrained_file=None, pretrained=None))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{where}: weights do not fit the '{cfg.name}' model of its run's config.yaml "
            f"(written by another version of the code?): {str(err).splitlines()[0]}"
        ) from None
    return model


def check_config(cfg: ModelConfig) -> None:
    """Refuse, naming the keys, what the builders cannot take: an unknown model or backbone,
    heads that do not divide the width, a head size the rotary embedding cannot rotate.

    Raises:
        ValueError: one line naming the key(s) and value(s).
    """
    if cfg.name not in MODELS:
        raise ValueError(f"model.name={cfg.name!r}: unknown; available: {sorted(MODELS)}")
    cfg = resolve_sizes(cfg)
    if cfg.heads < 1 or cfg.width < 1 or cfg.width % cfg.heads:
        raise ValueError(
            f"model.heads={cfg.heads}: must divide model.width={cfg.width} "
            "(each head gets width / heads channels)"
        )
    if cfg.name == "vit_s":
        return
    if (cfg.width // cfg.heads) % 4:
        raise ValueError(
            f"model.width={cfg.width} / model.heads={cfg.heads} = {cfg.width // cfg.heads}: "
            "the head size must be a multiple of 4 (2-D rotary position embedding)"
        )
    name = cfg.backbone
    if name == "convstem" or ":" in name:  # ours, or a hub name timm resolves online
        return
    if not timm.is_model(name):
        raise ValueError(
            f"model.backbone={name!r}: not a timm model (e.g. resnet18, resnet50; "
            "timm.list_models() lists them) nor convstem"
        )
    levels = _feature_levels(name)
    if levels is not None and not -levels <= cfg.backbone_index < levels:
        raise ValueError(
            f"model.backbone_index={cfg.backbone_index}: out of range for '{name}', which has "
            f"feature levels 0..{levels - 1}"
        )


def encoder_state_dict(source: str | Path | dict) -> dict[str, torch.Tensor]:
    """The `MultiViewViT` weights of a ``vit_s`` pretraining, for the fracture classifier.

    Args:
        source: a checkpoint file written by `xmatch pretrain` (``ckpt/*.pt``), or its
            ``model`` state dict.

    Returns:
        A state dict for `MultiViewViT` (keys without the ``encoder.vit.`` prefix).
    """
    if not isinstance(source, dict):
        source = torch.load(source, map_location="cpu", weights_only=True)["model"]
    prefix = "encoder.vit."
    state = {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)}
    if not state:
        raise ValueError("no ViT encoder weights in this checkpoint (was it a 'vit_s' run?)")
    return state


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
