"""Errors raised by drrgen. Every error about an input names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DrrgenError(Exception):
    """Base class of every error drrgen raises on purpose."""


class UserError(DrrgenError, ValueError):
    """A mistake in what the user gave: a file, an option, a configuration value, a store.

    The message starts with the input at fault (``<input>: <reason>``); the `drrgen` and
    `xmatch` command lines print it as ``error: <message>`` and exit 2, without a traceback
    (`drrgen.clikit`). A `ValueError`, so callers that catch those keep working.
    """


class CTReadError(UserError):
    """A CT volume could not be used.

    Attributes:
        path: the offending file or DICOM directory.
        reason: a short, specific description of the problem.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DeviceError(UserError):
    """A projector device that cannot be used: an unknown name, PyTorch missing, or CUDA asked
    for where there is no GPU (`drrgen.project(..., device=...)`, `drrgen build --device`)."""
