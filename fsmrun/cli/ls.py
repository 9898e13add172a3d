"""`fsmrun ls`: the runs of the results folder as a table (or JSON lines)."""

from __future__ import annotations

import difflib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.analysis.analysis_summary import (
    ANALYSIS_FIELD_PREFIX,
    analysis_fields,
    check_analysis_field,
)
from fsmrun.base.errors import UserError
from fsmrun.base.overrides import check_key, flatten
from fsmrun.cli._common import console, data_console, end_now, fmt, fmt_seconds, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.cli._render import dropped_line, fit_table
from fsmrun.runs.index import RunIndex
from fsmrun.runs.index_columns import DERIVED_FIELDS
from fsmrun.runs.index_query import RunQuery, parse_since, parse_where
from fsmrun.runs.index_read import check_filters
from fsmrun.runs.labels import matches_tags, parse_tags
from fsmrun.runs.layout import HASH_PREFIX_LEN, is_plain_name
from fsmrun.runs.run_folder import STATUSES, RunFolder, RunFolderError
from fsmrun.schemas.run_row import RunRow

DEFAULT_LIMIT = 20  # table rows shown without --limit/--all, newest first (as git log pages)

# Columns from most to least important: narrow terminals drop them from the end of this list
# (the accuracies go last: they are what a listing is read for).
PRIORITY = (
    "run id", "test acc", "ood acc", "status", "seed", "arch", "best val", "*fields", "steps",
    "wall", "created", "resumed", "audited", "device", "experiment", "config",
)  # fmt: skip
ORDER = (
    "run id", "experiment", "config", "arch", "seed", "*fields", "status", "created", "device",
    "steps", "resumed", "best val", "test acc", "ood acc", "wall", "audited",
)  # fmt: skip
RIGHT = {"seed", "steps", "resumed", "test acc", "ood acc", "wall"}
UNSHOWN = {"name", "description"}
COLLAPSED_FROM = 6  # varying fields under one parent named once from this many


def _created(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _best(row: RunRow) -> str:
    if row.best_val_metric is None:
        return "-"
    return f"{row.best_val_metric} {fmt(row.best_val_value)}"


def _configs(root: Path, rows: list[RunRow]) -> list[dict[str, Any]]:
    """Each run's config, flattened to dotted keys ({} when unreadable), read from its folder."""
    flats = []
    for row in rows:
        try:
            config = RunFolder(root / row.folder).read_config()
        except RunFolderError:
            config = None
        flats.append(flatten(config.model_dump(mode="json")) if config else {})
    return flats


def flat_config(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A config as the index stores it, as the table reads it (derived fields left out)."""
    if stored is None:
        return {}
    return {k: v for k, v in stored.items() if k not in DERIVED_FIELDS}


def sweep_config_hashes(root: Path, ref: str) -> frozenset[str]:
    """Config hashes of the cells of the sweep `ref` names (its id, a prefix or its name)."""
    from fsmrun.sweeps.coordinator import find_sweep, read_record

    return frozenset(cell.config_hash for cell in read_record(find_sweep(root, ref)).cells)


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose values differ among the runs (name and description left out)."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [
        k for k in keys
        if k not in UNSHOWN and len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1
    ]  # fmt: skip


def varying_line(varying: list[str]) -> str:
    """The `varying:` line: the fields, those under one parent named once with their count
    when there are many of them (a DFA's transition table is 120 fields)."""
    parents: dict[str, list[str]] = {}
    for name in varying:
        parent = name.rsplit(".", 2)[0] if name.count(".") >= 3 else name
        parents.setdefault(parent, []).append(name)
    shown = []
    for parent, names in parents.items():
        many = len(names) >= COLLAPSED_FROM
        shown.append(f"{parent}.* ({len(names)} fields)" if many else ", ".join(names))
    return "varying: " + (", ".join(shown) if shown else "none")


def _arch(config: dict[str, Any]) -> str:
    arch = config.get("model.arch")
    if arch is None:
        return "-"
    return f"{arch}/{config['model.pos_encoding']}" if arch == "transformer" else str(arch)


def _shown(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value)


def _cells(row: RunRow, config: dict[str, Any], fields: list[str]) -> dict[str, str]:
    cells = {
        "run id": row.run_id,
        "experiment": row.experiment,
        "config": row.config_hash[:HASH_PREFIX_LEN],
        "arch": _arch(config),
        "seed": _shown(config.get("seed")),
        "status": row.status,
        "created": _created(row.created),
        "device": row.device,
        "steps": str(row.steps),
        "resumed": str(row.times_resumed),
        "best val": _best(row),
        "test acc": fmt(row.test_string_acc),
        "ood acc": fmt(row.test_ood_string_acc),
        "wall": fmt_seconds(row.wall_time_s),
        "audited": "yes" if row.audit_verified else "-",
    }
    cells.update({f: _shown(config.get(f)) for f in fields})
    return cells


def runs_table_fit(
    rows: list[RunRow], configs: list[dict[str, Any]], fields: list[str], width: int | None
) -> tuple[Table, list[str]]:
    """The runs table; without room for every column, the least important ones are left out
    (see `fit_table`). The table and the columns left out."""
    lines = [_cells(r, c, fields) for r, c in zip(rows, configs, strict=True)]

    def expand(names: tuple[str, ...]) -> list[str]:
        return [f for n in names for f in (fields if n == "*fields" else [n])]

    return fit_table(expand(ORDER), lines, expand(PRIORITY), width, right=RIGHT)


def runs_table(
    rows: list[RunRow], configs: list[dict[str, Any]], fields: list[str], width: int | None
) -> Table:
    """`runs_table_fit`'s table."""
    return runs_table_fit(rows, configs, fields, width)[0]


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
    field: Annotated[
        list[str],
        typer.Option(
            "--field",
            metavar="KEY",
            help="Add a config field as a column, e.g. model.d_model (repeatable).",
        ),
    ] = [],  # noqa: B006
    tag: Annotated[
        list[str],
        typer.Option(
            "--tag",
            metavar="KEY=VALUE",
            help="Only runs with this tag (repeatable; KEY= for any value).",
        ),
    ] = [],  # noqa: B006
    where: Annotated[
        list[str],
        typer.Option(
            metavar="KEY=VALUE",
            help="Only runs whose config field (model.arch=lstm, language=...) or tag "
            "(tag.NAME=...) has this value (repeatable).",
        ),
    ] = [],  # noqa: B006
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Only runs created since a date (2026-12-01[T14:30]) or for an age (12h, 3d).",
            show_default=False,
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Only the runs of this sweep's cells.", show_default=False
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Show at most this many runs [default: {DEFAULT_LIMIT} in the table, all "
            "with --json].",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Show every run (no limit).")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON object (a RunRow) per line on stdout.")
    ] = False,
    reindex: Annotated[
        bool, typer.Option(help="Rebuild the index from the run folders first.")
    ] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """List runs, newest first: id, architecture, seed, status, steps, test accuracies.

    The table shows the newest 20 (--limit N, --all for every run); --json streams every run,
    oldest first unless --sort/--desc say otherwise. A line below the table names the config
    fields that differ among the runs listed. On a narrow terminal the least important
    columns are left out.

    Example:  fsmrun ls regex_a --status completed --sort test_string_acc --desc --field train.lr
    Example:  fsmrun ls --where model.arch=lstm --where tag.paper=yes --since 3d --all
    """
    check_filters(status, sort)
    for key in field:
        if not key.startswith(ANALYSIS_FIELD_PREFIX):  # analysis.<name>: see _add_analysis
            check_key(key, "--field")
        else:
            check_analysis_field(key)
    conditions = tuple(parse_where(where))
    created_since = parse_since(since) if since is not None else None
    root = results_root(results_dir)
    if experiment is not None:
        _check_experiment(root, experiment)
    if not root.is_dir():  # nothing to list; do not create the folder just to say so
        console.print(f"no runs: {root} does not exist (set --results-dir?)", markup=False)
        return
    index = RunIndex(root)
    if reindex:
        count = index.reindex()
        console.print(f"reindexed {count} run(s) from the folders under {root}", markup=False)
    newest_first = not json_ and sort is None and not desc
    cap = None if all_ else limit if limit is not None or json_ else DEFAULT_LIMIT
    query = RunQuery(
        experiment=experiment,
        status=status,
        where=conditions,
        since=created_since,
        config_hashes=sweep_config_hashes(root, sweep) if sweep is not None else None,
        sort=sort,
        descending=desc or newest_first,
        limit=None if tag else cap,  # with --tag the limit applies after the tag filter
    )
    if json_ and not tag:  # streamed as stored: memory does not grow with the runs
        _, lines = index.select_json(query)
        sys.stdout.writelines(line + "\n" for line in lines)
        end_now()
        return
    selection = index.select(query, with_config=not json_)
    listed: Iterable[Any] = selection.listed
    total = selection.total
    if tag:  # `KEY=` matches any value: filtered here, then the limit applies
        wanted = parse_tags(tag)
        matching = [x for x in listed if matches_tags(x.row.tags, wanted)]
        total = len(matching)
        listed = matching[:cap] if cap is not None else matching
    if json_:
        for item in listed:  # streamed: memory does not grow with the runs
            sys.stdout.write(item.row.model_dump_json() + "\n")
        end_now()
        return
    shown = list(listed)
    if not shown:
        console.print(_nothing_listed(index, root, experiment, status, tag), markup=False)
        return
    out = data_console()
    rows = [x.row for x in shown]
    configs = [flat_config(x.config) for x in shown]
    _add_analysis(root, rows, configs, list(field))
    table, dropped = runs_table_fit(rows, configs, list(field), out.width)
    out.print(table)
    if (line := dropped_line(dropped, out.width)) is not None:
        out.print(Text(line))
    varying = varying_fields(configs)
    if len(rows) > 1:
        out.print(Text(varying_line(varying)))
    if total > len(rows):
        more = total - len(rows)
        console.print(f"{more} more, --all to list every run", markup=False)
    end_now()


def _add_analysis(
    root: Path, rows: list[RunRow], configs: list[dict[str, Any]], fields: list[str]
) -> None:
    """Put the asked-for `analysis.<name>` numbers of each run beside its config values."""
    wanted = [f for f in fields if f.startswith(ANALYSIS_FIELD_PREFIX)]
    if not wanted:
        return
    for row, config in zip(rows, configs, strict=True):
        numbers = analysis_fields(RunFolder(root / row.folder))
        config.update({f: numbers.get(f) for f in wanted})


def _nothing_listed(
    index: RunIndex, root: Path, experiment: str | None, status: str | None, tags: list[str]
) -> str:
    """Why the list is empty: no runs at all, or filters that matched none of them."""
    what = f"of {experiment} " if experiment is not None else ""
    filters = ([f"--status {status}"] if status else []) + [f"--tag {t}" for t in tags]
    if not filters:
        return f"no runs {what}under {root}"
    total = len(index.rows(experiment=experiment))
    return (
        f"no runs {what}match {' '.join(filters)} under {root} ({total} run(s) {what}in all; "
        f"drop the filter to list them)"
    )


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
