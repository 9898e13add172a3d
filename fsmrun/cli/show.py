"""`fsmrun show`: one run's record, config, environment and metrics as rich panels."""

from __future__ import annotations

import time
from typing import Any

from rich.columns import Columns
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import data_console, fmt, fmt_seconds, results_root
from fsmrun.cli._options import ResultsDirOption, RunArg
from fsmrun.cli._render import dropped_line, split_table_fit
from fsmrun.runs.layout import resolve_run
from fsmrun.runs.run_folder import RunFolder
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


def _print_analysis(out: Any, folder: RunFolder) -> None:
    """The summary of analysis/analysis.json, when `fsmrun analyze` has run."""
    from fsmrun.analysis.analysis_summary import summary_lines

    report = folder.read_analysis()
    if report is not None:
        text = "\n".join(summary_lines(report))
        out.print(
            Panel(Text(text), title="analysis/analysis.json", title_align="left", expand=False)
        )
