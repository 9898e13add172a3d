"""Renderings shared by several commands: run summaries, metric tables, a run's exit code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

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


def _has_char(rows: list[SplitMetrics] | list[BinMetrics]) -> bool:
    return any(m.char_acc is not None for m in rows)


def _metric_table(title: str, first: str, with_char: bool, extra: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first)
    table.add_column("strings", justify="right")
    if with_char:
        table.add_column("char acc (baseline)", justify="right")
        table.add_column("char pos acc (baseline)", justify="right")
    table.add_column("string acc (baseline)", justify="right")
    table.add_column("string balanced", justify="right")
    table.add_column("class acc (baseline)", justify="right")
    table.add_column("class balanced", justify="right")
    table.add_column("next valid (baseline)", justify="right")
    for name in ("token acc", "state acc", *extra):
        table.add_column(name, justify="right")
    return table


def _metric_cells(m: SplitMetrics | BinMetrics, with_char: bool) -> list[str]:
    cells = []
    if with_char:
        cells += [
            with_baseline(m.char_acc, m.char_baseline),
            with_baseline(m.char_pos_acc, m.char_pos_baseline),
        ]
    return cells + [
        with_baseline(m.string_acc, m.string_baseline),
        fmt(m.string_balanced_acc),
        with_baseline(m.class_acc, m.class_baseline),
        fmt(m.class_balanced_acc),
        with_baseline(m.next_valid, m.next_valid_baseline),
        fmt(m.token_acc),
        fmt(m.state_acc),
    ]


def split_table(title: str, splits: dict[str, SplitMetrics]) -> Table:
    """One row per split: every accuracy beside its baseline, balanced accuracies beside
    class accuracies; the character-prediction columns when the run has them."""
    with_char = _has_char(list(splits.values()))
    table = _metric_table(title, "split", with_char, ("nll", "loss"))
    for name, m in splits.items():
        table.add_row(name, str(m.n_strings), *_metric_cells(m, with_char), fmt(m.nll), fmt(m.loss))
    return table


def bins_table(split: str, metrics: SplitMetrics) -> Table:
    """Length-binned metrics of one split."""
    with_char = _has_char(metrics.bins)
    table = _metric_table(f"{split} by string length", "lengths", with_char, ())
    for b in metrics.bins:
        table.add_row(f"{b.lo}-{b.hi}", str(b.n_strings), *_metric_cells(b, with_char))
    return table


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
