"""Ctrl-C held over a block of work and delivered after it: the one home of that mechanism,
for the training loop (`train.guards`: checkpoints) and the data loaders (no project imports,
so `data` and `finetune` can use it without importing the training loop)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch.utils.data import DataLoader


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done, then deliver it: e.g. a checkpoint and
    the record of it (`train.guards.Progress.saved`) happen together or not at all. Main
    thread only (elsewhere signals cannot be handled; the block then runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(*caught[0])
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


class InterruptSafeLoader(DataLoader):
    """A DataLoader whose iterator is built with Ctrl-C held (`deferred_interrupt`).

    Why: Ctrl-C landing while the iterator starts its worker processes cut torch's
    `_MultiProcessingDataLoaderIter` off half-built, and its ``__del__`` then printed a
    traceback (AttributeError ``_shutdown``) under the one-line interrupt message. Held until
    the iterator exists, the interrupt shuts it down cleanly. Every loader of the trainer is
    one (`data.make_loader`, `finetune.dataset.make_loader`).
    """

    def __iter__(self):
        with deferred_interrupt():
            return super().__iter__()
