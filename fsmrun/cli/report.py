"""`fsmrun report`: runs grouped by config fields, aggregated over seeds (no torch)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.analysis.report import (
    DEFAULT_BY,
    DEFAULT_METRICS,
    ReportError,
    build_report,
    report_records,
    to_csv,
    to_markdown,
)
from fsmrun.analysis.report_source import collect_runs
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.runs.index_query import parse_where
from fsmrun.schemas.sweep import Report


def _split_list(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def report_table(report: Report) -> Table:
    header, lines = report_records(report)
    lead = len(header) - 5 * len(report.metrics)
    title = Text(f"{report.checkpoint} checkpoint; mean ± std over seeds [min, max]")
    table = Table(title=title)
    for name in header[:lead]:
        table.add_column(name, justify="right" if name == "n" else "left")
    for metric in report.metrics:
        table.add_column(metric, justify="right")
        table.add_column("baseline", justify="right")
    for line in lines:
        cells = ["-" if v is None else str(v) for v in line[:lead]]
        for i in range(len(report.metrics)):
            mean, std, lo, hi, base = line[lead + 5 * i : lead + 5 * i + 5]
            if mean is None:
                cells += ["-", "-"]
                continue
            spread = f" ± {std:.3f}" if std is not None else ""
            cells += [
                f"{mean:.3f}{spread} [{lo:.2f}, {hi:.2f}]",
                "-" if base is None else f"{base:.3f}",
            ]
        table.add_row(*cells)
    return table


def report(
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SWEEP|EXP...]",
            help="Sweeps or experiments [default: all runs].",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        list[str],
        typer.Option(
            metavar="FIELD,...",
            help=f"Group by config fields [default: {','.join(DEFAULT_BY)}].",
            show_default=False,
        ),
    ] = [],  # noqa: B006
    metric: Annotated[
        list[str],
        typer.Option(
            metavar="SPLIT.FIELD,...",
            help=f"Metrics [default: {','.join(DEFAULT_METRICS)}].",
            show_default=False,
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
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    bins: Annotated[bool, typer.Option("--bins", help="Also one row per length bin.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="A Report JSON document on stdout.")
    ] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="A Markdown table on stdout.")
    ] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """Aggregate completed runs over seeds: n, mean, std, min, max beside baselines.

    Examples:
      fsmrun report tomita                                  # a sweep (or experiments)
      fsmrun report parity --by model.arch --metric test_ood.string_acc --bins
      fsmrun report --where model.arch=lstm --markdown
      fsmrun report mlregtest --by language,model.arch        # a sweep over language files
    """
    if checkpoint not in ("best", "last"):
        raise ReportError(f"--checkpoint must be best or last, got {checkpoint!r}")
    if sum((json_, csv_, markdown)) > 1:
        raise ReportError("choose one of --json, --csv, --markdown")
    conditions = parse_where(where)
    root = results_root(results_dir)
    by_fields = _split_list(by) or DEFAULT_BY
    metrics = _split_list(metric) or DEFAULT_METRICS
    runs = collect_runs(root, refs or [], by_fields, metrics, checkpoint, conditions)
    result = build_report(runs, by_fields, metrics, checkpoint, bins)
    if json_:
        echo_json(result.model_dump_json())
    elif csv_:
        sys.stdout.write(to_csv(result))
    elif markdown:
        sys.stdout.write(to_markdown(result))
    elif not runs:
        console.print(f"no completed runs to report under {root}", markup=False)
    else:
        data_console().print(report_table(result))
