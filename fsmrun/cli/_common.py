"""Shared pieces of the command line: consoles, the one mapping from errors to exit codes,
and formatting helpers. `fsmrun --help` imports this module and no command module, so it
imports no stage package and no Pydantic model at its top: those load inside the functions
that need them."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

from fsmrun.base.errors import EnvironmentFailure, UserError

EXIT_USER_ERROR = 2
EXIT_ENVIRONMENT = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a command ended by SIGPIPE reports it
DEBUG_ENV_VAR = "FSMRUN_DEBUG"
DATA_WIDTH = 200  # width of tables written to a pipe or a file (no terminal to measure)
INTERRUPTED_HINT = (
    "interrupted; a training run keeps its last checkpoint: "
    "`fsmrun ls --status interrupted` lists it, `fsmrun resume RUN` continues it"
)

# Status and progress go to stderr; rich resolves sys.stderr at write time (test runners swap it).
console = Console(stderr=True, highlight=False, soft_wrap=True)


_in_console_script = False  # inside `fsmrun.cli.main`, not an app run in-process (tests)


@contextlib.contextmanager
def console_script() -> Iterator[None]:
    """`fsmrun.cli.main` runs the app in this: within it, `end_now` ends the process."""
    global _in_console_script
    _in_console_script = True
    try:
        yield
    finally:
        _in_console_script = False


def in_console_script() -> bool:
    """Whether `end_now` would end this process (the tests check it never would there)."""
    return _in_console_script


def end_now() -> None:
    """Where a read-only command has written all it prints: in the console script, flush and
    end the process without freeing its objects one by one or running the interpreter's
    teardown (0.25 s after a report of 100,000 runs, 0.1 s after `ls`). Nothing of these
    commands needs atexit hooks: a child process they forked is joined, an index write is
    committed. In-process (tests, embedding), flush and return."""
    sys.stdout.flush()
    if not _in_console_script:
        return
    sys.stderr.flush()
    os._exit(0)


class _DataConsole(Console):
    """A console on stdout whose reader going away (`fsmrun ls | head -2`) ends the command
    as it does for JSON: status 141, quietly (rich's own handling exits 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError  # FsmrunGroup.invoke: stdout to /dev/null, exit 141


def data_console() -> Console:
    """A console on stdout for tables: the terminal's width, or DATA_WIDTH when piped."""
    out = _DataConsole(highlight=False)
    return out if out.is_terminal else _DataConsole(highlight=False, width=DATA_WIDTH)


def echo_json(text: str | bytes) -> None:
    """Write one JSON document (or line) to stdout, nothing else. Bytes (UTF-8, as
    pydantic-core encodes) go straight to the binary stream: a report of 100,000 runs is
    14 MB, which decoding, copying and encoding again took 0.04 s."""
    if isinstance(text, bytes):
        sys.stdout.flush()  # what was written as text goes first
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.write(b"\n")
        sys.stdout.buffer.flush()
        return
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def results_root(value: Path | None) -> Path:
    """--results-dir, else $FSMRUN_RESULTS_DIR, else ./results; UserError if that path exists
    but is not a folder (it may be missing: a command that writes creates it)."""
    from fsmrun.runs.layout import RESULTS_ENV_VAR, default_results_root

    root = default_results_root(value)
    if root.exists() and not root.is_dir():
        raise UserError(
            f"the results folder {root} is not a folder; choose another with --results-dir or "
            f"{RESULTS_ENV_VAR}"
        )
    return root


def error_exit(err: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an error a user or the OS caused; None for a bug.

    User errors (bad config, unknown run, bad regex, unfillable corpus, missing device):
    exit 2. Environment failures (disk full, permission denied): exit 1, naming the file and
    the OS reason. Anything else is a bug and keeps its traceback.
    """
    from pydantic import ValidationError

    from fsmrun.base.errors import describe_validation_error
    from fsmrun.base.io import WriteError

    if isinstance(err, ValidationError):
        return EXIT_USER_ERROR, describe_validation_error(err)
    if isinstance(err, UserError):  # RegexError, StateLimitError, RunNotFound, ... all are
        return EXIT_USER_ERROR, str(err)
    if isinstance(err, EnvironmentFailure):
        return EXIT_ENVIRONMENT, f"cannot access {err.path}: {err.reason}"
    if isinstance(err, OSError):
        where = err.filename if err.filename is not None else "(no file named)"
        verb = "write" if isinstance(err, WriteError) else "access"
        return EXIT_ENVIRONMENT, f"cannot {verb} {where}: {err.strerror or err}"
    return None


class _WarningHandler(logging.Handler):
    """fsmrun's warnings (stdlib logging in core) as `warning: ...` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"warning: {record.getMessage()}", markup=False, highlight=False)


def show_warnings() -> None:
    """Route warnings of the `fsmrun` loggers to the status console (once)."""
    logger = logging.getLogger("fsmrun")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(logging.WARNING))


def _usage_exit(err: ClickException) -> typer.Exit:
    """Print a command-line usage mistake as one `error:` line; the Exit to raise (code 2)."""
    message = " ".join(err.format_message().replace("Value error, ", "").split())
    ctx = getattr(err, "ctx", None)
    if ctx is not None and isinstance(err, UsageError):
        message += f" (see `{ctx.command_path} --help`)"
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(err.exit_code)


class FsmrunGroup(TyperGroup):
    """Typer group applying `error_exit`, and Ctrl-C -> exit 130 without a traceback.

    Set FSMRUN_DEBUG=1 to see the traceback of user and environment errors too.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # bare `fsmrun`: the help, as usual
                raise
            raise _usage_exit(err) from None

    def invoke(self, ctx: typer.Context) -> Any:
        show_warnings()
        try:
            return super().invoke(ctx)
        except ClickException as err:  # a command's usage error: one line, no usage block
            raise _usage_exit(err) from None
        except KeyboardInterrupt:
            console.print(INTERRUPTED_HINT, soft_wrap=True, markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:  # stdout's reader is gone (`fsmrun ls --json | head`): quiet
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as err:
            mapped = error_exit(err)
            if mapped is None or os.environ.get(DEBUG_ENV_VAR):
                raise
            code, message = mapped
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None


def fmt(value: float | int | None, digits: int = 4) -> str:
    """A metric for a table: fixed digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def with_baseline(value: float | None, baseline: float | None) -> str:
    """'0.9800 (0.5000)': an accuracy beside its majority-class baseline."""
    if value is None:
        return "-"
    return f"{value:.4f} ({fmt(baseline)})"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
