"""The `fsmrun` command line: one Typer app (`_app`, with the table of commands), the commands
in modules grouped by what they work on (`_app.COMMANDS` says which module holds which).
`main()` imports the app inside its Ctrl-C guard, so an interrupt even during start-up exits
130 quietly, and runs it as the console script: a read-only command then ends the process as
soon as its output is flushed (`_common.end_now`)."""

from __future__ import annotations

import os
import sys
from typing import Any

EXIT_INTERRUPTED = 130


def main() -> None:
    """Console-script entry point (`fsmrun = "fsmrun.cli:main"`). Pydantic's plugins are
    off unless PYDANTIC_DISABLE_PLUGINS says otherwise: looking for them reads the metadata
    of every installed package, 35 ms of each command's start-up with torch and mlflow
    installed, and fsmrun uses none (set PYDANTIC_DISABLE_PLUGINS= to load them)."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        from fsmrun.cli._app import app
        from fsmrun.cli._common import console_script

        with console_script():
            app(prog_name="fsmrun")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


def __getattr__(name: str) -> Any:
    if name == "app":  # `from fsmrun.cli import app` (tests, embedding)
        from fsmrun.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
