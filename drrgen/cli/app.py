"""The typer application shared by every command module."""

import typer

app = typer.Typer(
    name="drrgen",
    help="DRRs and many-to-many correspondence ground truth from CT volumes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main() -> None:
    """DRRs and many-to-many correspondence ground truth from CT volumes."""
