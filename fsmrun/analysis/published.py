"""Published numbers beside measured ones: a suite's `published` entries (paper, table, cell)
matched to the suite's completed runs, each aggregated over seeds as mean and max, read at
the checkpoint each run reports (`train.evaluate_checkpoint`). No torch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fsmrun.analysis.report import ReportRun, check_metric, field_value
from fsmrun.schemas.sweep import PublishedResult, SweepSpec
from fsmrun.sweeps.coordinator import find_sweep, read_record
from fsmrun.sweeps.spec import SweepError, load_spec


@dataclass(frozen=True)
class PublishedRow:
    """One published number and what the matching runs measured (None: no run yet)."""

    published: PublishedResult
    n_runs: int
    mean: float | None
    max: float | None

    @property
    def selection(self) -> str:
        """'parity model.arch=lstm': the experiment and the fields that select its cells."""
        fields = " ".join(f"{k}={v}" for k, v in self.published.where.items())
        return f"{self.published.experiment} {fields}".strip()


def spec_of(root: Path, ref: str) -> SweepSpec | None:
    """The spec of sweep `ref` under `root`, else of the built-in suite `ref`, else None."""
    for read in (lambda: read_record(find_sweep(root, ref)).spec, lambda: load_spec(ref)):
        try:
            return read()
        except SweepError:
            continue
    return None


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


def compare_published(spec: SweepSpec, runs: Iterable[ReportRun]) -> list[PublishedRow]:
    """One row per published entry of `spec`: n, mean and max over the matching runs."""
    runs = list(runs)
    rows = []
    for entry in spec.published:
        values = [_value(r, entry.metric) for r in runs if _matches(r, entry)]
        values = [v for v in values if v is not None]
        rows.append(
            PublishedRow(
                entry,
                len(values),
                sum(values) / len(values) if values else None,
                max(values) if values else None,
            )
        )
    return rows


def published_for(root: Path, refs: Iterable[str], runs: list[ReportRun]) -> list[PublishedRow]:
    """The published comparison of every ref that is a sweep or suite carrying numbers."""
    rows: list[PublishedRow] = []
    for ref in refs:
        spec = spec_of(root, ref)
        if spec is not None and spec.published:
            rows += compare_published(spec, runs)
    return rows


def published_markdown(rows: list[PublishedRow]) -> str:
    """A Markdown table: selection, metric, published (aggregate), ours mean and max, n, source."""
    lines = [
        "| experiment | metric | published | ours: mean | ours: max | n | source |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for row in rows:
        p = row.published
        lines.append(
            f"| {row.selection} | {p.metric} | {p.value:.3f} ({p.aggregate}) | {fmt(row.mean)} "
            f"| {fmt(row.max)} | {row.n_runs} | {p.source} |"
        )
    return "\n".join(lines) + "\n"
