"""`fsmrun ls`: the runs of the registry as a table (or JSON lines)."""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fsmrun.cli._common import console, data_console, echo_json, fmt, fmt_seconds, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.core.errors import UserError
from fsmrun.core.index import RegistryIndex, check_filters, is_plain_name
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
    check_filters(status, sort)
    root = results_root(results_dir)
    if experiment is not None:
        _check_experiment(root, experiment)
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
        what = f"of {experiment} " if experiment is not None else ""
        console.print(f"no runs {what}under {root}", markup=False)
        return
    data_console().print(runs_table(rows))


def _check_experiment(root: Path, experiment: str) -> None:
    """UserError unless `experiment` has a folder under `root` or is a built-in experiment."""
    from fsmrun.experiments import list_experiments

    with_runs = sorted(
        p.name for p in (root.iterdir() if root.is_dir() else []) if p.is_dir()
        and is_plain_name(p.name)
    )  # fmt: skip
    known = sorted({*with_runs, *list_experiments()})
    if is_plain_name(experiment) and experiment in known:
        return
    close = difflib.get_close_matches(experiment, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(with_runs) if with_runs else "none"
    raise UserError(
        f"unknown experiment {experiment!r}: no runs of it under {root} and not a built-in "
        f"experiment{hint} (experiments with runs: {shown})"
    )
