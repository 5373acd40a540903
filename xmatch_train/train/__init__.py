"""Training loop, runtime (device, precision, DDP), checkpoints and logs."""

from xmatch_train.train.checkpoint import load_checkpoint, save_checkpoint
from xmatch_train.train.loop import cosine_schedule, fit

__all__ = ["cosine_schedule", "fit", "load_checkpoint", "save_checkpoint"]
