"""Correspondence models: backbones, attention modules (Table 1), ViT-S encoder, head, registry."""

from xmatch_train.models.head import correspondence_loss, correspondence_matrix
from xmatch_train.models.matcher import CorrespondenceModel
from xmatch_train.models.registry import (
    MODELS,
    SIZES,
    ModelConfig,
    build_model,
    count_parameters,
    encoder_state_dict,
    model_from_checkpoint,
    register,
    resolve_sizes,
)
from xmatch_train.models.vit import VIT_S, MultiViewViT, build_vit, load_timm_weights

__all__ = [
    "MODELS",
    "SIZES",
    "VIT_S",
    "CorrespondenceModel",
    "ModelConfig",
    "MultiViewViT",
    "build_model",
    "build_vit",
    "correspondence_loss",
    "correspondence_matrix",
    "count_parameters",
    "encoder_state_dict",
    "load_timm_weights",
    "model_from_checkpoint",
    "register",
    "resolve_sizes",
]
