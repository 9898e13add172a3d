"""Commands on one or two runs, none of them loading torch: `fsmrun show` (a run's record,
config, environment and metrics as rich panels), `diff` (the config fields that differ between
two runs) and `tag` (add, change or remove a run's tags and note, kept in <run>/labels.json)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.columns import Columns
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsmrun.base.overrides import flatten
from fsmrun.cli._common import (
    console,
    data_console,
    echo_json,
    end_now,
    fmt,
    fmt_seconds,
    results_root,
)
from fsmrun.cli._options import JsonOption, ResultsDirOption, RunArg
from fsmrun.cli._render import dropped_line, split_table_fit
from fsmrun.runs.labels import label_run, labels_line, parse_tags
from fsmrun.runs.layout import resolve_run
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.records import Metrics


def _grid(pairs: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in pairs:
        grid.add_row(key, Text("-" if value is None else str(value)))
    return grid


def _flat(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs = []
    for key, value in doc.items():
        if isinstance(value, dict):
            pairs.extend(_flat(value, f"{prefix}{key}."))
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _metrics_panel(metrics: Metrics, width: int) -> tuple[Panel, list[str]]:
    es = metrics.early_stop
    head = _grid(
        [
            ("stop reason", metrics.stop_reason),
            ("steps / epochs", f"{metrics.steps} / {metrics.epochs}"),
            ("wall time", fmt_seconds(metrics.wall_time_s)),
            (
                f"best {metrics.monitor}",
                f"{fmt(es.best_value)} at step {es.best_step} (epoch "
                f"{'-' if es.best_epoch is None else es.best_epoch + 1})",
            ),
        ]
    )
    parts = Table.grid()
    parts.add_row(head)
    dropped: list[str] = []
    for name, ev in (("best", metrics.best), ("last", metrics.last)):
        splits = {"val": ev.val, "test": ev.test}
        if ev.test_ood is not None:
            splits["test_ood"] = ev.test_ood
        # the panel's border and padding take 4 columns
        table, more = split_table_fit(f"{name} checkpoint (step {ev.step})", splits, width - 4)
        parts.add_row(table)
        dropped += [c for c in more if c not in dropped]
    return Panel(parts, title="metrics.json", title_align="left", expand=False), dropped


def show(run: RunArg, results_dir: ResultsDirOption = None) -> None:
    """Show one run: its record, config, environment and final metrics.

    Example:  fsmrun show regex_a-3f9c2a
    """
    info = RunFolder(resolve_run(results_root(results_dir), run)).load()
    r = info.record
    out = data_console()
    record_pairs: list[tuple[str, Any]] = [
        ("run id", r.run_id),
        ("folder", info.folder),
        ("status", info.status),
        ("created", _when(r.created)),
        ("updated", _when(r.updated)),
        ("command", " ".join(r.command)),
        ("device", f"{r.device}  amp {r.amp}  deterministic {r.deterministic}"),
        ("steps / epochs", f"{r.steps} / {r.epochs}"),
        ("times resumed", r.times_resumed),
        ("model", r.model_summary),
        ("parameters", r.parameter_count),
        ("audit verified", r.audit_verified),
    ]
    if r.hashes is not None:
        record_pairs += [(f"hash {k}", v) for k, v in r.hashes.model_dump().items()]
    if r.parent_run:
        record_pairs.append(("extends", f"{r.parent_run} from step {r.parent_step}"))
    record_pairs += [("checkpoint fallback", note) for note in r.checkpoint_fallbacks]
    if r.error:
        record_pairs.append(("error", r.error))
    out.print(Panel(_grid(record_pairs), title="run.json", title_align="left", expand=False))
    labels = RunFolder(info.folder).read_labels()
    if labels.tags or labels.note:
        pairs = [(f"tag {k}", v) for k, v in labels.tags.items()]
        pairs += [("note", labels.note)] if labels.note else []
        out.print(Panel(_grid(pairs), title="labels.json", title_align="left", expand=False))
    if info.config is not None:
        doc = info.config.model_dump()
        sections = {k: doc.pop(k) for k in ("data", "model", "train")}
        parts = [_grid(_flat(doc)), *(_grid(_flat(v, f"{k}.")) for k, v in sections.items())]
        columns = Columns(parts, padding=(0, 4))
        out.print(Panel(columns, title="config.json", title_align="left", expand=False))
    if info.env is not None:
        out.print(
            Panel(
                _grid(_flat(info.env.model_dump())),
                title="env.json",
                title_align="left",
                expand=False,
            )
        )
    if info.metrics is not None:
        panel, dropped = _metrics_panel(info.metrics, out.width)
        out.print(panel)
        if (line := dropped_line(dropped, out.width)) is not None:
            out.print(line, markup=False)
    else:
        out.print("no metrics.json yet (the run has not finished)", markup=False)
    _print_analysis(out, RunFolder(info.folder))
    end_now()


def _print_analysis(out: Any, folder: RunFolder) -> None:
    """The summary of analysis/analysis.json, when `fsmrun analyze` has run."""
    from fsmrun.analysis.analysis_summary import summary_lines

    report = folder.read_analysis()
    if report is not None:
        text = "\n".join(summary_lines(report))
        out.print(
            Panel(Text(text), title="analysis/analysis.json", title_align="left", expand=False)
        )


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
