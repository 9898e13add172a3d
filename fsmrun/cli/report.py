"""`fsmrun report`: runs grouped by config fields, aggregated over seeds (no torch)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.analysis.published import PublishedRow, published_for, published_markdown
from fsmrun.analysis.report import (
    DEFAULT_BY,
    DEFAULT_METRICS,
    ReportError,
    build_report,
    collect_runs,
    filter_runs,
    report_records,
    to_csv,
    to_markdown,
)
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.cli._render import dropped_line, fit_table
from fsmrun.schemas.sweep import Report


def _split_list(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def report_table(report: Report, width: int | None = None) -> Table:
    """`report_table_fit`'s table."""
    return report_table_fit(report, width)[0]


def report_table_fit(report: Report, width: int | None) -> tuple[Table, list[str]]:
    """The report as a table fitted to `width`. When not every metric fits, group columns
    whose value is the same in every row move into the title, then a metric cell reads
    'mean ± std' instead of 'mean ± std [min, max]'; past that, baselines, n and finally
    metrics are left out (`fit_table`). The table and what was left out."""
    header, lines = report_records(report)
    lead = header[: len(header) - 5 * len(report.metrics)]
    groups = [c for c in lead if c != "n"]
    constant = [c for c in groups if len({str(line[lead.index(c)]) for line in lines}) == 1]
    best: tuple[Table, list[str]] | None = None
    for hoist, compact in ((False, False), (True, False), (True, True)):
        shown = [c for c in groups if not (hoist and c in constant)]
        columns = [*shown, *(["n"] if "n" in lead else [])]
        for metric in report.metrics:
            columns += [metric, f"{metric}\nbaseline"]
        baselines = [f"{m}\nbaseline" for m in report.metrics]
        priority = [*shown, *report.metrics, "n", *baselines]
        cells = [_report_cells(line, lead, report.metrics, compact) for line in lines]
        spread = "mean ± std" if compact else "mean ± std over seeds [min, max]"
        same = (
            ", ".join(f"{c}={lines[0][lead.index(c)]}" for c in constant) + "; "
            if hoist and constant
            else ""
        )
        title = f"{same}{report.checkpoint} checkpoint; {spread}"
        fitted = fit_table(
            columns,
            cells,
            priority,
            width,
            right=set(columns) - set(shown),
            title=title,
            headers={b: "baseline" for b in baselines},  # each right of its metric
        )
        lost = sum(c in report.metrics or c in baselines for c in fitted[1])
        if best is None or lost < sum(c in report.metrics or c in baselines for c in best[1]):
            best = (fitted[0], fitted[1] + (["min/max"] if compact else []))
        if not lost:
            break
    assert best is not None
    return best


def _report_cells(
    line: list[Any], lead: list[str], metrics: list[str], compact: bool
) -> dict[str, str]:
    cells = {name: "-" if v is None else str(v) for name, v in zip(lead, line, strict=False)}
    for i, metric in enumerate(metrics):
        mean, std, lo, hi, base = line[len(lead) + 5 * i : len(lead) + 5 * i + 5]
        spread = f" ± {std:.3f}" if std is not None else ""
        if mean is None:
            cells[metric] = "-"
        elif compact:
            cells[metric] = f"{mean:.3f}{spread}"
        else:
            cells[metric] = f"{mean:.3f}{spread} [{lo:.2f}, {hi:.2f}]"
        cells[f"{metric}\nbaseline"] = "-" if base is None else f"{base:.3f}"
    return cells


def published_table(rows: list[PublishedRow]) -> Table:
    table = Table(title=Text("published beside ours (each run at its evaluated checkpoint)"))
    for name in ("experiment", "metric", "published", "ours: mean", "ours: max", "n", "source"):
        table.add_column(name, justify="right" if name.startswith(("ours", "n")) else "left")
    for row in rows:
        p = row.published
        cells = [row.selection, p.metric, f"{p.value:.3f} ({p.aggregate})"]
        cells += ["-" if v is None else f"{v:.3f}" for v in (row.mean, row.max)]
        table.add_row(*cells, str(row.n_runs), p.source)
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
    if not root.is_dir():  # not "no runs": nothing was looked at
        raise ReportError(
            f"the results folder {root} does not exist; point --results-dir (or "
            f"FSMRUN_RESULTS_DIR) at the folder your runs are in"
        )
    runs = filter_runs(collect_runs(root, refs or []), conditions)
    result = build_report(
        runs, _split_list(by) or None, _split_list(metric) or None, checkpoint, bins
    )
    if json_:
        echo_json(result.model_dump_json())
    elif csv_:
        sys.stdout.write(to_csv(result))
    elif markdown:
        sys.stdout.write(to_markdown(result))
    elif not runs:
        console.print(f"no completed runs to report under {root}", markup=False)
    else:
        out = data_console()
        table, dropped = report_table_fit(result, out.width)
        out.print(table)
        if (line := dropped_line(dropped, out.width)) is not None:
            out.print(line, markup=False)
    # A suite that carries published numbers: the paper beside the runs (table and Markdown).
    published = published_for(root, refs or [], runs) if not (json_ or csv_) else []
    if published and markdown:
        sys.stdout.write("\n" + published_markdown(published))
    elif published:
        data_console().print(published_table(published))
