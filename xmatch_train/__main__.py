"""``python -m xmatch_train`` (e.g. under ``torchrun -m xmatch_train pretrain ...``)."""

from xmatch_train.cli import app

app()
