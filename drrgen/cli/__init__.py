"""The `drrgen` command line. Each sub-module registers its commands on `app`."""

# Command modules register themselves on import (one module per pipeline stage).
from drrgen.cli import commands_build, commands_core, commands_data, commands_fracture  # noqa: F401
from drrgen.cli.app import app

__all__ = ["app"]
