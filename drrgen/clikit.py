"""What the `drrgen` and `xmatch` command lines share: the Typer app and its one error path.

Every command of both CLIs runs inside `CliGroup.invoke`, which sorts what escapes it:

* a user's mistake is printed as one line ``error: <input>: <reason>`` on stderr and the
  command exits 2. Mistakes are `drrgen.errors.UserError` (and its subclasses: `CTReadError`,
  `ConfigError`) wherever raised; a ValueError, IndexError, FileNotFoundError or
  FileExistsError raised *on purpose* by this project (a ``raise`` statement in ``drrgen/`` or
  ``xmatch_train/``: the convention for input checks); an OSError about a named file
  (permission denied, is a directory, ...); and a malformed command line (click's usage
  errors, as one line with a pointer to ``--help``);
* anything else is a bug and keeps its traceback: e.g. a ValueError raised inside NumPy or
  PyTorch ("operands could not be broadcast ..."), a TypeError, a RuntimeError;
* Ctrl-C prints ``interrupted`` (plus what the command kept and how to resume, see
  `on_interrupt`) and exits 130.

``XMATCH_DEBUG=1`` or ``DRRGEN_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Callable
from pathlib import Path

import typer
from typer.core import TyperGroup

from drrgen.errors import UserError

try:  # recent typer carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # older typer: click itself
    from click import exceptions as _click_errors
_NO_ARGS_IS_HELP = getattr(_click_errors, "NoArgsIsHelpError", ())

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_VARIABLES = ("XMATCH_DEBUG", "DRRGEN_DEBUG")
# Our packages: an error raised by a `raise` statement in these files is deliberate.
_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = tuple(str(_ROOT / name) + os.sep for name in ("drrgen", "xmatch_train"))
_DELIBERATE = (ValueError, IndexError, FileNotFoundError, FileExistsError)
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
_INTERRUPT_KEY = "clikit.on_interrupt"


def raised_on_purpose(err: BaseException) -> bool:
    """True when `err` comes from a ``raise`` statement in drrgen/ or xmatch_train/ (not from
    a library, nor from an operation of ours that failed, such as ``a + b`` or ``float(s)``)."""
    worker = _worker_raise_site(str(err))
    if worker is not None:  # re-raised by a DataLoader worker: judge the worker's raise
        filename, line = worker
        return filename.startswith(_PACKAGES) and line.lstrip().startswith("raise ")
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
    if not filename.startswith(_PACKAGES):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")


def user_error_message(err: BaseException) -> str | None:
    """The message of a user's mistake (see the module docstring), or None for a bug."""
    if isinstance(err, UserError) or (isinstance(err, _DELIBERATE) and raised_on_purpose(err)):
        return _unwrap_worker(str(err).strip()) or type(err).__name__
    if isinstance(err, _PATH_ERRORS) and getattr(err, "filename", None) is not None:
        reason = (err.strerror or type(err).__name__).lower()
        return f"{err.filename}: {reason}"
    return None


def _worker_raise_site(text: str) -> tuple[str, str] | None:
    """(file, source line) of the innermost frame of a DataLoader worker's re-raised
    traceback (see `_unwrap_worker`), or None for any other message."""
    if not (text.startswith("Caught ") and "in DataLoader worker process" in text):
        return None
    lines = text.splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    if not frames or frames[-1] + 1 >= len(lines):
        return None
    filename = lines[frames[-1]].split('"')[1]
    return os.path.abspath(filename), lines[frames[-1] + 1]


def _unwrap_worker(text: str) -> str:
    """The original message of an error a PyTorch DataLoader worker re-raised in the main
    process (``Caught X in DataLoader worker process 0.`` then the worker's traceback, whose
    last line is ``module.X: <message>``); other messages as they are."""
    if not (text.startswith("Caught ") and "in DataLoader worker process" in text):
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    head, sep, message = last.partition(": ")
    return message.strip() if sep and " " not in head else last.strip()


def _usage_error_message(err: Exception) -> str:
    """A click usage error as ``<input>: <reason> (see '<command> --help')``."""
    param = getattr(err, "param", None)
    bad = isinstance(err, _click_errors.BadParameter)
    if bad and not isinstance(err, _click_errors.MissingParameter) and param is not None:
        if getattr(param, "param_type_name", "") == "option":
            text = f"{'/'.join(param.opts)}: {err.message}"
        else:
            text = f"{param.human_readable_name}: {err.message}"
    else:
        text = err.format_message()
    where = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
    return " ".join(text.split()) + where


def on_interrupt(ctx: typer.Context, hint: Callable[[], str]) -> None:
    """Have Ctrl-C in this command print ``interrupted: <hint()>`` (what was kept, how to
    resume) instead of a bare ``interrupted``."""
    ctx.meta[_INTERRUPT_KEY] = hint


def _debug() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_VARIABLES)


def fail(message: str) -> typer.Exit:
    """Print ``error: <message>`` on stderr; return the exit to raise (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USER_ERROR)


class CliGroup(TyperGroup):
    """The group class of both command lines: runs each command inside the one error path."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            message = "interrupted"
            hint = ctx.meta.get(_INTERRUPT_KEY)
            if hint is not None:
                try:
                    message += f": {hint()}"
                except Exception as err:  # the hint must never hide the interruption
                    message += f" (state unknown: {type(err).__name__}: {err})"
            typer.echo(message, err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except _NO_ARGS_IS_HELP:
            raise
        except _click_errors.UsageError as err:  # a malformed command line, e.g. --size abc
            if _debug():
                raise
            raise fail(_usage_error_message(err)) from None
        except (typer.Exit, typer.Abort, _click_errors.ClickException):
            raise
        except Exception as err:
            message = None if _debug() else user_error_message(err)
            if message is None:
                raise
            raise fail(message) from None


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app with the settings of both command lines: `CliGroup`'s error path; plain
    click help, which wraps descriptions and never cuts option names at 80 columns."""
    return typer.Typer(
        name=name,
        help=help,
        cls=CliGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


def out_folder(path: str | Path, option: str = "--out") -> Path:
    """`path` as a Path; a UserError when it exists and is not a folder (it may not exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: {option} must be a folder, but this is a file")
    return path


def local_out_folder(url: str, option: str = "--out") -> None:
    """`out_folder` for a store given as a path or URL (URLs are not checked here)."""
    if "://" not in str(url):
        out_folder(url, option)
