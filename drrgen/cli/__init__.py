"""The `drrgen` command line. Each sub-module registers its commands on `app`."""

from drrgen.cli.app import app

# Command modules register themselves on import (one module per pipeline stage).
from drrgen.cli import commands_core  # noqa: E402,F401
from drrgen.cli import commands_build  # noqa: E402,F401
from drrgen.cli import commands_data  # noqa: E402,F401

__all__ = ["app"]
