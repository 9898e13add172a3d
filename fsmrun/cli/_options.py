"""Options and arguments shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
ProgressOption = Annotated[
    bool, typer.Option(help="Show the progress bar and epoch lines on stderr.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override any config value, e.g. --set model.d_model=32 (repeatable; values "
        "parse as JSON, else as text).",
        show_default=False,
    ),
]
RunArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN", help="Run id, a unique prefix of one, or a run folder.", show_default=False
    ),
]
ExperimentArg = Annotated[
    str,
    typer.Argument(
        metavar="EXP",
        help="Built-in experiment name (see `fsmrun experiments`) or a path to a TOML file.",
        show_default=False,
    ),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="KEY=VALUE",
        help="Label the run with a tag (repeatable), kept in <run>/labels.json beside it; "
        "`fsmrun tag` changes tags later.",
        show_default=False,
    ),
]
NoteOption = Annotated[
    str | None,
    typer.Option(help="A free-text note on the run (labels.json).", show_default=False),
]
