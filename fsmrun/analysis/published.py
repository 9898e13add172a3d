"""Published numbers beside measured ones: a suite's `published` entries (paper, table, cell)
matched to the suite's completed runs, each aggregated over seeds as mean and max, read at
the checkpoint each run reports (`train.evaluate_checkpoint`), each marked with how far it
was checked against its paper. No torch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fsmrun.analysis.report import ReportRun, check_metric, field_value
from fsmrun.schemas.sweep import PublishedComparison, PublishedResult, SweepSpec
from fsmrun.sweeps.coordinator import find_sweep, read_record
from fsmrun.sweeps.spec import SweepError, load_spec

# The mark after a published value, by how far it was checked (none: the paper's own table).
CHECK_MARKS = {"primary": "", "secondary": "~", "unchecked": "?"}
CHECK_FOOTNOTES = {
    "secondary": "~ secondary: agrees with a later work that reprints the paper's table, "
    "not checked against the paper itself (the suite file's checked_note names the reprint)",
    "unchecked": "? unchecked: typed without the paper's table at hand; check it against the "
    "paper before citing it",
}


def published_value(entry: PublishedResult) -> str:
    """'0.964 (max) ?': the value, how the paper aggregated, and the mark of its check."""
    mark = CHECK_MARKS[entry.checked]
    return f"{entry.value:.3f} ({entry.aggregate}){' ' + mark if mark else ''}"


def check_footnotes(rows: Iterable[PublishedComparison]) -> list[str]:
    """One line per mark the rows use, explaining it (primary values carry no mark)."""
    used = {row.published.checked for row in rows}
    return [note for status, note in CHECK_FOOTNOTES.items() if status in used]


def _suite(ref: str) -> SweepSpec | None:
    try:
        return load_spec(ref)
    except SweepError:
        return None


def spec_of(root: Path, ref: str) -> SweepSpec | None:
    """The spec of sweep `ref` under `root`, else of the built-in suite `ref`, else None.

    A sweep run from a suite (same name, experiments and languages) takes the suite file's
    current `published` entries, not the ones stored when it ran: published values get
    checked and corrected after the runs, and the runs do not depend on them."""
    try:
        stored = read_record(find_sweep(root, ref)).spec
    except SweepError:
        return _suite(ref)
    suite = _suite(stored.name)
    if suite is None or (suite.experiments, suite.languages) != (
        stored.experiments,
        stored.languages,
    ):
        return stored
    return stored.model_copy(update={"published": suite.published})


def _matches(run: ReportRun, entry: PublishedResult) -> bool:
    if run.config.name != entry.experiment:
        return False
    return all(str(field_value(run.config, k)) == str(v) for k, v in entry.where.items())


def _value(run: ReportRun, metric: str) -> float | None:
    split, field = check_metric(metric)
    checkpoint = run.metrics.best if run.metrics.evaluated == "best" else run.metrics.last
    metrics = getattr(checkpoint, split, None)
    value = getattr(metrics, field, None) if metrics is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def compare_published(spec: SweepSpec, runs: Iterable[ReportRun]) -> list[PublishedComparison]:
    """One row per published entry of `spec`: n, mean and max over the matching runs."""
    runs = list(runs)
    rows = []
    for entry in spec.published:
        values = [_value(r, entry.metric) for r in runs if _matches(r, entry)]
        values = [v for v in values if v is not None]
        rows.append(
            PublishedComparison(
                published=entry,
                n_runs=len(values),
                mean=sum(values) / len(values) if values else None,
                max=max(values) if values else None,
            )
        )
    return rows


def rounded(rows: Iterable[PublishedComparison], digits: int) -> list[PublishedComparison]:
    """The rows with mean and max rounded to `digits`, as every number of a report is."""
    return [
        row.model_copy(
            update={
                "mean": None if row.mean is None else round(row.mean, digits),
                "max": None if row.max is None else round(row.max, digits),
            }
        )
        for row in rows
    ]


def published_for(
    root: Path, refs: Iterable[str], runs: list[ReportRun]
) -> list[PublishedComparison]:
    """The published comparison of every ref that is a sweep or suite carrying numbers."""
    rows: list[PublishedComparison] = []
    for ref in refs:
        spec = spec_of(root, ref)
        if spec is not None and spec.published:
            rows += compare_published(spec, runs)
    return rows


def published_markdown(rows: list[PublishedComparison]) -> str:
    """A Markdown table (selection, metric, published value with its check mark, checked, ours
    mean and max, n, source), then a line per check mark used."""
    lines = [
        "| experiment | metric | published | checked | ours: mean | ours: max | n | source |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for row in rows:
        p = row.published
        lines.append(
            f"| {row.selection} | {p.metric} | {published_value(p)} | {p.checked} "
            f"| {fmt(row.mean)} | {fmt(row.max)} | {row.n_runs} | {p.source} |"
        )
    notes = check_footnotes(rows)
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)
