"""Errors raised by drrgen. Every error about an input names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DrrgenError(Exception):
    """Base class of every error drrgen raises on purpose."""


class CTReadError(DrrgenError, ValueError):
    """A CT volume could not be used.

    Attributes:
        path: the offending file or DICOM directory.
        reason: a short, specific description of the problem.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
