"""The flat forms of a Report: one row per group, bin and metric (the long, tidy form), as
CSV, Markdown or text rows for a table; every form shows the same columns and the same
numbers, rounded to the report's digits. No torch."""

from __future__ import annotations

import csv
import io
from typing import Any

from fsmrun.schemas.sweep import Report


def stat_keys(report: Report) -> tuple[str, ...]:
    """The statistics of each metric, in column order: the --agg one first."""
    return (report.agg, *(s for s in ("std", "min", "max", "baseline") if s != report.agg))


def report_records(report: Report) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the long (tidy) form: one row per group, bin ('all', then each
    length bin with --bins) and metric. Table, Markdown and CSV all show exactly these
    columns and values; `n` counts the runs with a value of that metric."""
    keys = [*report.by, *report.split_by]
    stats = stat_keys(report)
    with_bins = any(row.bins for row in report.rows)
    header = [*keys, *(["bin"] if with_bins else []), "metric", "n", *stats]
    lines = []
    for row in report.rows:
        group = [row.group[f] for f in keys]
        for m in report.metrics:
            found = row.metrics[m]
            lines.append(
                [*group, *(["all"] if with_bins else []), m, found.n]
                + [getattr(found, s) for s in stats]
            )
        for lo, hi in sorted({(b.lo, b.hi) for b in row.bins}):
            for m in report.metrics:
                hits = [b.stats for b in row.bins if b.metric == m and (b.lo, b.hi) == (lo, hi)]
                if hits:
                    lines.append(
                        [*group, f"{lo}-{hi}", m, hits[0].n] + [getattr(hits[0], s) for s in stats]
                    )
    return header, lines


def format_value(value: Any, digits: int) -> str:
    """How every form writes a value: floats with `digits` decimals, None as ''."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def report_text_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """`report_records` as text, the one rendering of numbers shared by every form."""
    header, lines = report_records(report)
    return header, [[format_value(v, report.digits) for v in line] for line in lines]


def to_csv(report: Report) -> str:
    header, lines = report_text_rows(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(lines)
    return out.getvalue()


def to_markdown(report: Report) -> str:
    """A GitHub table of the same columns and values as the CSV ('-' where empty)."""
    header, lines = report_text_rows(report)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell or "-" for cell in line) + " |" for line in lines]
    return "\n".join(out) + "\n"
