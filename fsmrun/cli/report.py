"""`fsmrun report`: runs grouped by config fields, aggregated over seeds (no torch)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic_core import to_json
from rich.table import Table
from rich.text import Text

from fsmrun.analysis.published import (
    check_footnotes,
    published_for,
    published_markdown,
    published_value,
    rounded,
    spec_of,
)
from fsmrun.analysis.report import DEFAULT_BY, DEFAULT_DIGITS, DEFAULT_METRICS, ReportError
from fsmrun.analysis.report_forms import report_text_rows, to_csv, to_markdown
from fsmrun.cli._common import console, data_console, echo_json, end_now, results_root
from fsmrun.cli._options import ResultsDirOption
from fsmrun.cli._render import dropped_line, fit_table
from fsmrun.schemas.sweep import PublishedComparison, Report

if TYPE_CHECKING:
    from fsmrun.analysis.report_source import IndexedReportRun

TABLE_GROUPS = 200  # groups a report table shows without --all (the other forms: all)


def _split_list(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def report_table(report: Report, width: int | None = None) -> Table:
    """`report_table_fit`'s table."""
    return report_table_fit(report, width)[0]


def report_table_fit(report: Report, width: int | None) -> tuple[Table, list[str]]:
    """The same columns and values as --csv and --markdown ('-' where empty), fitted to
    `width`: group columns whose value is the same in every row move into the title first;
    then the least important columns go (the spread, n, the baseline; the aggregate and the
    group columns last). The table and what was left out."""
    header, lines = report_text_rows(report)
    first_number = header.index("n")
    groups, numbers = header[:first_number], header[first_number:]
    stats = numbers[1:]
    lead = [s for s in stats if s == report.agg]
    title = f"{report.checkpoint} checkpoint; {report.agg} over seeds"
    constant = [
        g for g in groups if g != "metric" and len({line[header.index(g)] for line in lines}) == 1
    ]
    best: tuple[Table, list[str]] | None = None
    for hoist in (False, True):
        shown = [g for g in groups if not (hoist and g in constant)]
        columns = [*shown, *numbers]
        priority = [*lead, "metric", *shown, "baseline", "n", *[s for s in stats if s not in lead]]
        cells = [
            {name: cell or "-" for name, cell in zip(header, line, strict=True)} for line in lines
        ]
        same = ", ".join(f"{g}={lines[0][header.index(g)]}" for g in constant) if lines else ""
        fitted = fit_table(
            columns,
            cells,
            priority,
            width,
            right=set(numbers),
            title=f"{same}; {title}" if hoist and same else title,
        )
        if best is None or len(fitted[1]) < len(best[1]):
            best = fitted
        if not fitted[1] or not constant:
            break
    assert best is not None
    return best


def published_table(rows: list[PublishedComparison]) -> Table:
    table = Table(title=Text("published beside ours (each run at its evaluated checkpoint)"))
    columns = ("experiment", "metric", "published", "checked", "ours: mean", "ours: max", "n",
               "source")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right" if name.startswith(("ours", "n")) else "left")
    for row in rows:
        p = row.published
        cells = [row.selection, p.metric, published_value(p), p.checked]
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
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help=f"Every group in the table (it shows the first {TABLE_GROUPS}; --csv, "
            "--markdown and --json always give every group).",
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
    from fsmrun.analysis.report_source import gc_paused, indexed_report
    from fsmrun.runs.index_query import parse_where

    conditions = parse_where(where)
    root = results_root(results_dir)
    if not root.is_dir():  # not "no runs": nothing was looked at
        raise ReportError(
            f"the results folder {root} does not exist; point --results-dir (or "
            f"FSMRUN_RESULTS_DIR) at the folder your runs are in"
        )
    by_fields = _split_list(by) or DEFAULT_BY
    metrics = _split_list(metric) or DEFAULT_METRICS
    # No cyclic garbage collection until the report is written and its objects are freed
    # (they make no cycles): a collection over the objects of a 100,000-run report took
    # 0.15 s when indexed_report turned it back on.
    # --json: the report is encoded while the child process finishes its part of the check
    # (its JSON is final unless a suite's published numbers are added); the last report
    # built is the one returned.
    encoded: list[bytes] = []
    with gc_paused():
        doc, runs = indexed_report(
            root, refs or [], by_fields, metrics, checkpoint, conditions,
            built=(lambda doc: encoded.append(to_json(doc))) if json_ else None,
            bins=bins, agg=agg, digits=digits, pool=pool,
        )  # fmt: skip
        _write(root, refs or [], doc, runs, json_=json_, csv_=csv_, markdown=markdown, all_=all_,
               encoded=encoded[-1] if encoded else None)  # fmt: skip
        encoded.clear()
        end_now()
        del doc, runs  # freed here, before the collector is back


def _write(
    root: Path,
    refs: list[str],
    doc: dict[str, Any],
    runs: list[IndexedReportRun],
    *,
    json_: bool,
    csv_: bool,
    markdown: bool,
    all_: bool,
    encoded: bytes | None = None,
) -> None:
    """Print the report `doc` of `runs` in the form asked for, the published values of a
    suite among `refs` beside it. `encoded`: `doc` as JSON, already encoded."""
    from fsmrun.analysis.report_source import full_runs

    # A suite that carries published numbers: the paper beside the runs (table, Markdown and
    # JSON; not CSV, which holds one table). Only then are the runs read whole, from their
    # folders.
    with_published = not csv_ and any(
        (spec := spec_of(root, ref)) is not None and spec.published for ref in refs
    )
    published = published_for(root, refs, full_runs(runs)) if with_published else []
    doc["published"] = rounded(published, doc["digits"])
    for note in doc["notes"]:  # on stderr: stdout stays a clean table, CSV or JSON
        console.print(f"note: {note}", markup=False)
    if json_:  # the Report's JSON, written from its plain data (report_document)
        echo_json(encoded if encoded is not None and not published else to_json(doc))
        return
    table = not (csv_ or markdown)
    more = 0 if all_ or not table else max(0, len(doc["rows"]) - TABLE_GROUPS)
    if more:  # rendering (and validating) 33,334 groups as a table took over a minute
        doc = {**doc, "rows": doc["rows"][:TABLE_GROUPS]}
    result = Report.model_validate(doc)
    if csv_:
        sys.stdout.write(to_csv(result))
    elif markdown:
        sys.stdout.write(to_markdown(result))
    elif not runs:
        console.print(f"no completed runs to report under {root}", markup=False)
    else:
        out = data_console()
        fitted, dropped = report_table_fit(result, out.width)
        out.print(fitted)
        if (line := dropped_line(dropped, out.width)) is not None:
            out.print(line, markup=False)
        if more:
            out.print(
                f"{more} more group(s): --all shows every one; --csv, --markdown and --json "
                "give them all",
                markup=False,
            )
    if published and markdown:
        sys.stdout.write("\n" + published_markdown(published))
    elif published:
        out = data_console()
        out.print(published_table(published))
        for footnote in check_footnotes(published):
            out.print(footnote, markup=False)
