"""`fsmrun ls`: the runs of the registry as a table (or JSON lines)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from fsmrun.cli._common import console, data_console, echo_json, fmt, fmt_seconds, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.core.index import RegistryIndex
from fsmrun.core.registry import HASH_PREFIX_LEN
from fsmrun.core.run_folder import STATUSES
from fsmrun.schemas.registry import RunRow


def _created(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _best(row: RunRow) -> str:
    if row.best_val_metric is None:
        return "-"
    return f"{row.best_val_metric} {fmt(row.best_val_value)}"


def runs_table(rows: list[RunRow]) -> Table:
    table = Table()
    for name, justify in (
        ("run id", "left"),
        ("experiment", "left"),
        ("config", "left"),
        ("status", "left"),
        ("created", "left"),
        ("device", "left"),
        ("steps", "right"),
        ("resumed", "right"),
        ("best val", "left"),
        ("test acc", "right"),
        ("ood acc", "right"),
        ("wall", "right"),
        ("audited", "center"),
    ):
        table.add_column(name, justify=justify, no_wrap=name == "run id")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.run_id,
            r.experiment,
            r.config_hash[:HASH_PREFIX_LEN],
            r.status,
            _created(r.created),
            r.device,
            str(r.steps),
            str(r.times_resumed),
            _best(r),
            fmt(r.test_string_acc),
            fmt(r.test_ood_string_acc),
            fmt_seconds(r.wall_time_s),
            "yes" if r.audit_verified else "-",
        )
    return table


def ls(
    experiment: Annotated[
        str | None,
        typer.Argument(metavar="[EXP]", help="Only runs of this experiment.", show_default=False),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help=f"Only runs with this status: {', '.join(STATUSES)}.", show_default=False
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Sort by a field, e.g. test_string_acc, best_val_value, wall_time_s, steps "
            "[default: created].",
            show_default=False,
        ),
    ] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Sort in descending order.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON object (a RunRow) per line on stdout.")
    ] = False,
    reindex: Annotated[
        bool, typer.Option(help="Rebuild the index from the run folders first.")
    ] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """List runs: id, status, steps, best validation value, test accuracies, audit mark.

    Example:  fsmrun ls regex_a --status completed --sort test_string_acc --desc
    """
    root = results_root(results_dir)
    if not root.is_dir():  # nothing to list; do not create the folder just to say so
        console.print(f"no runs: {root} does not exist (set --results-dir?)", markup=False)
        return
    index = RegistryIndex(root)
    if reindex:
        count = index.reindex()
        console.print(f"reindexed {count} run(s) from the folders under {root}", markup=False)
    rows = index.rows(experiment=experiment, status=status, sort=sort, descending=desc)
    if json_:
        for row in rows:
            echo_json(row.model_dump_json())
        return
    if not rows:
        console.print(f"no runs under {root}", markup=False)
        return
    data_console().print(runs_table(rows))
