"""Shared pieces of the command line: options, consoles, error handling, formatting.

Every command module imports from here; the error mapping of `FsmrunGroup` is the one place
where exceptions a user can cause become a one-line `error: ...` and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup

from fsmrun.core.checkpoint import CheckpointError
from fsmrun.core.registry import default_results_root, resolve_run

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV_VAR = "FSMRUN_DEBUG"
DATA_WIDTH = 200  # width of tables written to a pipe or a file (no terminal to measure)

ResultsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--results-dir",
        help="Results folder [default: $FSMRUN_RESULTS_DIR, else ./results].",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Device: auto (CUDA when available), cpu or cuda.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")
]

# Status and progress go to stderr; rich resolves sys.stderr at write time (test runners swap it).
console = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(ValueError):
    """A mistake on the command line that the command itself detected."""


def data_console() -> Console:
    """A console on stdout for tables: the terminal's width, or DATA_WIDTH when piped."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=DATA_WIDTH)


def echo_json(text: str) -> None:
    """Write one JSON document (or line) to stdout, nothing else."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def results_root(value: Path | None) -> Path:
    """--results-dir, else $FSMRUN_RESULTS_DIR, else ./results."""
    return default_results_root(value)


def find_run(root: Path, ref: str) -> Path:
    """The run folder RUN names (id, unique prefix or folder); RunNotFound / AmbiguousRun."""
    return resolve_run(root, ref)


def describe_validation_error(err: ValidationError, what: str = "invalid configuration") -> str:
    """One line per problem: `what: loc: message (got value)`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] in ("missing", "value_error") else f" (got {e.get('input')!r})"
        parts.append(f"{loc}: {msg}{got}")
    return f"{what}: " + "; ".join(parts)


def user_error_message(err: BaseException) -> str | None:
    """The one-line message for an exception a user can cause, or None for a bug."""
    if isinstance(err, ValidationError):
        return describe_validation_error(err)
    if isinstance(err, (ValueError, CheckpointError)):
        return str(err)
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        return f"cannot access{where}: {err.strerror or err}"
    return None


class FsmrunGroup(TyperGroup):
    """Typer group that turns user errors into `error: ...` + exit 2 and Ctrl-C into exit 130.

    Set FSMRUN_DEBUG=1 to see the traceback instead.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            console.print(
                "interrupted; a training run keeps its last checkpoint: "
                "`fsmrun ls --status interrupted` lists it, `fsmrun resume RUN` continues it",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:
            message = user_error_message(err)
            if message is None or os.environ.get(DEBUG_ENV_VAR):
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None


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
