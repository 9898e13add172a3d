"""`fsmrun tag`: add, change or remove a run's tags and note (kept in <run>/labels.json)."""

from __future__ import annotations

from typing import Annotated

import typer

from fsmrun.cli._common import data_console, results_root
from fsmrun.cli._options import ResultsDirOption, RunArg
from fsmrun.runs.labels import label_run, labels_line, parse_tags
from fsmrun.runs.layout import resolve_run


def tag(
    run: RunArg,
    tags: Annotated[
        list[str] | None,
        typer.Argument(metavar="[KEY=VALUE]...", help="Tags to add or change.", show_default=False),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option(
            "--remove", metavar="KEY", help="Remove this tag (repeatable).", show_default=False
        ),
    ] = None,  # fmt: skip
    note: Annotated[
        str | None,
        typer.Option(help="Replace the run's note ('' clears it).", show_default=False),
    ] = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Label a run: tags (key=value) and a free-text note, shown by `show`, filtered by
    `ls --tag`, grouped by `report --by tag.KEY`, exported to TensorBoard and MLflow.

    They live in <run>/labels.json beside the run's files, which stay unchanged (a completed
    run included). With nothing to change, prints the run's labels.

    Example:  fsmrun tag regex_a-3f9c2a paper=v2 baseline=yes --note "the run in figure 3"
    """
    root = results_root(results_dir)
    folder = resolve_run(root, run)
    labels = label_run(folder, parse_tags(tags or []), remove=tuple(remove or ()), note=note)
    data_console().print(labels_line(labels), markup=False, soft_wrap=True)
