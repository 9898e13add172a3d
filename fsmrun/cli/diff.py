"""`fsmrun diff RUN RUN`: the config fields that differ between two runs (no torch)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.base.overrides import flatten
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import JsonOption, ResultsDirOption
from fsmrun.runs.layout import resolve_run
from fsmrun.runs.run_folder import RunFolder, RunFolderError


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value in a, value in b) for every key whose values differ."""
    flat_a, flat_b = flatten(a), flatten(b)
    keys = list(dict.fromkeys([*flat_a, *flat_b]))
    return {k: (flat_a.get(k), flat_b.get(k)) for k in keys if flat_a.get(k) != flat_b.get(k)}


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def diff(
    first: Annotated[str, typer.Argument(metavar="RUN", help="Run id, unique prefix or folder.")],
    second: Annotated[str, typer.Argument(metavar="RUN", help="Run id, unique prefix or folder.")],
    json_: JsonOption = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """Show the config fields that differ between two runs.

    Example:  fsmrun diff parity-3f2a tomita3-9c1b
    """
    root = results_root(results_dir)
    folders = [RunFolder(resolve_run(root, ref)) for ref in (first, second)]
    ids, docs = [], []
    for folder in folders:
        ids.append(folder.read_record().run_id)
        config = folder.read_config()
        if config is None:
            raise RunFolderError(f"{folder.path} has no config.json (the run died during set-up)")
        docs.append(config.model_dump(mode="json"))
    changes = config_diff(*docs)
    if json_:
        echo_json(json.dumps({k: list(v) for k, v in changes.items()}))
        return
    if not changes:
        console.print(f"{ids[0]} and {ids[1]} have identical configs", markup=False)
        return
    table = Table()
    table.add_column("field")
    table.add_column(ids[0])
    table.add_column(ids[1])
    for key, (a, b) in changes.items():
        table.add_row(key, Text(_shown(a)), Text(_shown(b)))
    data_console().print(table)
