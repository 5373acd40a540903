"""The typer application shared by every command module (settings and error path:
`drrgen.clikit`)."""

from drrgen.clikit import make_app

app = make_app("drrgen", "DRRs and many-to-many correspondence ground truth from CT volumes.")


@app.callback()
def _main() -> None:
    """DRRs and many-to-many correspondence ground truth from CT volumes."""
