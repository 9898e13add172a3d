"""Renderings shared by several commands: run summaries, metric tables, a run's exit code."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import (
    EXIT_INTERRUPTED,
    console,
    data_console,
    fmt,
    fmt_seconds,
    results_root,
    with_baseline,
)
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import BinMetrics, Metrics, SplitMetrics

if TYPE_CHECKING:
    from fsmrun.train.loop import RunResult


def fit_table(
    columns: list[str],
    lines: list[dict[str, str]],
    priority: Sequence[str],
    width: int | None,
    *,
    right: Collection[str] = (),
    title: str | None = None,
    keep: int = 2,
    headers: Mapping[str, str] | None = None,
) -> tuple[Table, list[str]]:
    """A table of `columns` (in this order) that fits `width`: numbers are never wrapped or
    elided; instead the least important columns (last in `priority`; columns missing from it
    go first) are left out, down to `keep` columns. `headers` shows a column under another
    name than its key. The table and the columns left out."""

    def build(names: list[str]) -> Table:
        table = Table(title=Text(title) if title else None, title_justify="left")
        for name in names:
            header = (headers or {}).get(name, name)
            table.add_column(header, justify="right" if name in right else "left", no_wrap=True)
        for cells in lines:
            table.add_row(*(Text(cells.get(name, "-")) for name in names))
        return table

    ranked = [c for c in priority if c in columns]
    ranked += [c for c in columns if c not in ranked]
    dropped: list[str] = []
    table = build(columns)
    if width is None:
        return table, dropped
    measure = Console(width=10_000)
    while len(ranked) > keep and Measurement.get(measure, measure.options, table).maximum > width:
        dropped.append(ranked.pop())
        table = build([c for c in columns if c not in dropped])
    return table, [c for c in columns if c in dropped]


def dropped_line(dropped: list[str], width: int | None) -> str | None:
    """The line under a table that says which columns did not fit (None when all did)."""
    if not dropped:
        return None
    names = [name.replace("\n", " ") for name in dropped]
    return (
        f"left out to fit {width} columns: {', '.join(names)} "
        f"(a wider terminal or --json shows them)"
    )


def _has_char(rows: list[SplitMetrics] | list[BinMetrics]) -> bool:
    return any(m.char_acc is not None for m in rows)


# Headers on two lines, so that a column is as wide as its numbers; the order of importance
# decides which columns a narrow terminal leaves out (accuracies last).
CHAR_ACC, CHAR_POS_ACC = "char acc\n(base)", "char pos\nacc (base)"
STRING_ACC, STRING_BAL = "string acc\n(base)", "string\nbalanced"
CLASS_ACC, CLASS_BAL = "class acc\n(base)", "class\nbalanced"
NEXT_VALID, TOKEN_ACC, STATE_ACC = "next valid\n(base)", "token\nacc", "state\nacc"
METRIC_PRIORITY = (
    CHAR_ACC, STRING_ACC, CLASS_ACC, CHAR_POS_ACC, STRING_BAL, CLASS_BAL, "strings",
    NEXT_VALID, TOKEN_ACC, STATE_ACC, "nll", "loss",
)  # fmt: skip


def _metric_cells(m: SplitMetrics | BinMetrics, with_char: bool) -> dict[str, str]:
    cells = {"strings": str(m.n_strings)}
    if with_char:
        cells[CHAR_ACC] = with_baseline(m.char_acc, m.char_baseline)
        cells[CHAR_POS_ACC] = with_baseline(m.char_pos_acc, m.char_pos_baseline)
    cells.update(
        {
            STRING_ACC: with_baseline(m.string_acc, m.string_baseline),
            STRING_BAL: fmt(m.string_balanced_acc),
            CLASS_ACC: with_baseline(m.class_acc, m.class_baseline),
            CLASS_BAL: fmt(m.class_balanced_acc),
            NEXT_VALID: with_baseline(m.next_valid, m.next_valid_baseline),
            TOKEN_ACC: fmt(m.token_acc),
            STATE_ACC: fmt(m.state_acc),
        }
    )
    return cells


def _metric_fit(
    title: str, first: str, lines: list[dict[str, str]], with_char: bool, width: int | None
) -> tuple[Table, list[str]]:
    columns = [first, "strings"] + ([CHAR_ACC, CHAR_POS_ACC] if with_char else [])
    columns += [STRING_ACC, STRING_BAL, CLASS_ACC, CLASS_BAL, NEXT_VALID, TOKEN_ACC, STATE_ACC]
    columns += [c for c in ("nll", "loss") if c in lines[0]] if lines else []
    right = set(columns) - {first}
    return fit_table(columns, lines, (first, *METRIC_PRIORITY), width, right=right, title=title)


def split_table_fit(
    title: str, splits: dict[str, SplitMetrics], width: int | None
) -> tuple[Table, list[str]]:
    """One row per split: every accuracy beside its baseline, balanced accuracies beside
    class accuracies; the character-prediction columns when the run has them. Fitted to
    `width` (see `fit_table`): the table and the columns left out."""
    with_char = _has_char(list(splits.values()))
    lines = [
        {"split": name, **_metric_cells(m, with_char), "nll": fmt(m.nll), "loss": fmt(m.loss)}
        for name, m in splits.items()
    ]
    return _metric_fit(title, "split", lines, with_char, width)


def split_table(title: str, splits: dict[str, SplitMetrics]) -> Table:
    """`split_table_fit` with every column."""
    return split_table_fit(title, splits, None)[0]


def bins_table_fit(split: str, metrics: SplitMetrics, width: int | None) -> tuple[Table, list[str]]:
    """Length-binned metrics of one split, fitted to `width`."""
    with_char = _has_char(metrics.bins)
    lines = [{"lengths": f"{b.lo}-{b.hi}", **_metric_cells(b, with_char)} for b in metrics.bins]
    return _metric_fit(f"{split} by string length", "lengths", lines, with_char, width)


def bins_table(split: str, metrics: SplitMetrics) -> Table:
    """`bins_table_fit` with every column."""
    return bins_table_fit(split, metrics, None)[0]


def metrics_lines(metrics: Metrics) -> list[str]:
    """The short result summary: best validation value and the task's accuracies."""
    es = metrics.early_stop
    lines = [
        f"stopped:   {metrics.stop_reason} after {metrics.steps} steps, {metrics.epochs} epochs "
        f"({fmt_seconds(metrics.wall_time_s)})",
        f"best:      {metrics.monitor} {fmt(es.best_value)} (epoch "
        f"{'-' if es.best_epoch is None else es.best_epoch + 1}, step {fmt(es.best_step)})",
    ]
    best = metrics.best
    for name, split in (("test", best.test), ("test_ood", best.test_ood)):
        if split is None:
            continue
        if split.char_acc is not None:
            lines.append(
                f"{name + ':':<10} char acc {with_baseline(split.char_acc, split.char_baseline)}"
                f", per position {with_baseline(split.char_pos_acc, split.char_pos_baseline)}"
            )
            continue
        lines.append(
            f"{name + ':':<10} string acc {fmt(split.string_acc)} "
            f"(baseline {fmt(split.string_baseline)}, balanced {fmt(split.string_balanced_acc)})"
            f", class acc {fmt(split.class_acc)} (baseline {fmt(split.class_baseline)})"
        )
    return lines


def print_result(result: RunResult) -> None:
    """Run id, folder and (when finished) the summary, on stdout."""
    out = data_console()
    out.print(f"run:       {result.run_id}", soft_wrap=True, markup=False)
    out.print(f"folder:    {Path(result.run_dir)}", soft_wrap=True, markup=False)
    out.print(f"status:    {result.status}", soft_wrap=True, markup=False)
    if result.metrics is not None:
        for line in metrics_lines(result.metrics):
            out.print(line, soft_wrap=True, markup=False)


def finish_run(result: RunResult, root: Path) -> None:
    """Print the result; interrupted runs exit 130 with the resume command, failed ones 1."""
    print_result(result)
    hint = "" if root == results_root(None) else f" --results-dir {root}"
    if result.status == "interrupted":
        console.print(
            f"interrupted at step {result.steps}; continue with: "
            f"fsmrun resume {result.run_id}{hint}",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "failed":
        # On stderr whatever the progress display: --no-progress hides the epoch lines.
        error = RunFolder(result.run_dir).read_record().error or result.stop_reason
        console.print(
            f"error: run {result.run_id} failed at step {result.steps}: {error}; "
            f"`fsmrun eval {result.run_id} --checkpoint last` scores its last good checkpoint",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1)
