"""Training loop, runtime (device, precision, DDP), checkpoints and logs."""

from xmatch_train.train.checkpoint import load_checkpoint, save_checkpoint
from xmatch_train.train.loop import cosine_schedule, pretrain

__all__ = ["cosine_schedule", "load_checkpoint", "pretrain", "save_checkpoint"]
