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
from fsmrun.schemas.records import Metrics, SplitMetrics

if TYPE_CHECKING:
    from fsmrun.core.loop import RunResult


def split_table(title: str, splits: dict[str, SplitMetrics]) -> Table:
    """One row per split: every scalar metric, class accuracies beside their baselines."""
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    table.add_column("strings", justify="right")
    table.add_column("string acc (baseline)", justify="right")
    table.add_column("class acc (baseline)", justify="right")
    for name in ("token acc", "next valid", "state acc", "nll", "loss"):
        table.add_column(name, justify="right")
    for name, m in splits.items():
        table.add_row(
            name,
            str(m.n_strings),
            with_baseline(m.string_acc, m.string_baseline),
            with_baseline(m.class_acc, m.class_baseline),
            fmt(m.token_acc),
            fmt(m.next_valid),
            fmt(m.state_acc),
            fmt(m.nll),
            fmt(m.loss),
        )
    return table


def bins_table(split: str, metrics: SplitMetrics) -> Table:
    """Length-binned metrics of one split."""
    table = Table(title=f"{split} by string length", title_justify="left")
    table.add_column("lengths")
    table.add_column("strings", justify="right")
    table.add_column("string acc (baseline)", justify="right")
    table.add_column("class acc (baseline)", justify="right")
    for name in ("token acc", "next valid", "state acc"):
        table.add_column(name, justify="right")
    for b in metrics.bins:
        table.add_row(
            f"{b.lo}-{b.hi}",
            str(b.n_strings),
            with_baseline(b.string_acc, b.string_baseline),
            with_baseline(b.class_acc, b.class_baseline),
            fmt(b.token_acc),
            fmt(b.next_valid),
            fmt(b.state_acc),
        )
    return table


def metrics_lines(metrics: Metrics) -> list[str]:
    """The short result summary: best validation value and whole-string accuracies."""
    es = metrics.early_stop
    lines = [
        f"stopped:   {metrics.stop_reason} after {metrics.steps} steps, {metrics.epochs} epochs "
        f"({fmt_seconds(metrics.wall_time_s)})",
        f"best:      {metrics.monitor} {fmt(es.best_value)} (epoch "
        f"{'-' if es.best_epoch is None else es.best_epoch + 1}, step {fmt(es.best_step)})",
    ]
    best = metrics.best
    for name, split in (("test", best.test), ("test_ood", best.test_ood)):
        if split is not None:
            lines.append(
                f"{name + ':':<10} string acc {split.string_acc:.4f} "
                f"(baseline {split.string_baseline:.4f}), class acc {split.class_acc:.4f} "
                f"(baseline {split.class_baseline:.4f})"
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
        raise typer.Exit(1)
