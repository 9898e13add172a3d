"""`fsmrun report`: runs grouped by config fields, aggregated over seeds (no torch)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.analysis.report import (
    DEFAULT_BY,
    DEFAULT_DIGITS,
    DEFAULT_METRICS,
    ReportError,
    build_report,
    collect_runs,
    filter_runs,
    report_text_rows,
    sweep_notes,
    to_csv,
    to_markdown,
)
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.schemas.sweep import Report


def _split_list(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def report_table(report: Report) -> Table:
    """The same columns and values as --csv and --markdown ('-' where empty)."""
    header, lines = report_text_rows(report)
    title = Text(f"{report.checkpoint} checkpoint; {report.agg} over seeds")
    table = Table(title=title)
    first_number = header.index("n")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= first_number else "left")
    for line in lines:
        table.add_row(*[Text(cell or "-") for cell in line])
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
        typer.Option(metavar="FIELD=VALUE", help="Only runs whose config field has this value."),
    ] = [],  # noqa: B006
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    bins: Annotated[bool, typer.Option("--bins", help="Also one row per length bin.")] = False,
    agg: Annotated[
        str,
        typer.Option(
            help="Statistic shown first: mean, median or max (over seeds; max as "
            "Deletang et al. report)."
        ),
    ] = "mean",
    digits: Annotated[
        int, typer.Option(help="Decimals of every number, in every output form.")
    ] = DEFAULT_DIGITS,
    pool: Annotated[
        bool,
        typer.Option(
            "--pool",
            help="Pool runs that differ in more than the seed within a --by group "
            "(default: split the group by the fields that differ).",
        ),
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="A Report JSON document on stdout.")
    ] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="A Markdown table on stdout.")
    ] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """Aggregate completed runs over seeds: n, mean (or --agg), std, min, max beside baselines.

    A group holds seeds of one config: when runs of a --by group differ in other fields, the
    group is split by them (a note names them; --pool pools them). A config and seed trained
    twice counts once (the newest). Table, --markdown, --csv and --json show the same
    columns and the same numbers, rounded to --digits.

    Examples:
      fsmrun report tomita                                  # a sweep (or experiments)
      fsmrun report parity --by model.arch --metric test_ood.string_acc --bins
      fsmrun report --where model.arch=lstm --markdown
    """
    if checkpoint not in ("best", "last"):
        raise ReportError(f"--checkpoint must be best or last, got {checkpoint!r}")
    if sum((json_, csv_, markdown)) > 1:
        raise ReportError("choose one of --json, --csv, --markdown")
    conditions = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep:
            raise ReportError(f"--where expects field=value, got {item!r}")
        conditions[key.strip()] = value
    root = results_root(results_dir)
    runs = filter_runs(collect_runs(root, refs or []), conditions)
    result = build_report(
        runs,
        _split_list(by) or None,
        _split_list(metric) or None,
        checkpoint,
        bins,
        agg=agg,
        digits=digits,
        pool=pool,
    )
    result = result.model_copy(update={"notes": sweep_notes(root, refs or []) + result.notes})
    for note in result.notes:  # on stderr: stdout stays a clean table, CSV or JSON
        console.print(f"note: {note}", markup=False)
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
