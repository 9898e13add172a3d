"""Reports: completed runs grouped by config fields and aggregated over seeds (n, mean, std,
min, max of chosen metrics beside their baselines, optionally per length bin). No torch.
Which runs, and their values, come from the index (`report_source`).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fsmrun.base.errors import UserError
from fsmrun.runs.index_columns import config_fields
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import BinMetrics, Metrics, SplitMetrics
from fsmrun.schemas.sweep import BinStats, MetricStats, Report, ReportRow

DEFAULT_BY = ["experiment", "model.arch", "model.pos_encoding"]
DEFAULT_METRICS = ["test.string_acc", "test_ood.string_acc"]
SPLITS = ("val", "test", "test_ood")
BASELINES = {"string_acc": "string_baseline", "class_acc": "class_baseline"}
_NUMERIC = [
    name for name, f in SplitMetrics.model_fields.items() if name not in ("n_strings", "bins")
]


class ReportError(UserError):
    """An unknown metric, field or selection."""


class RunLike(Protocol):
    """What a report reads of a run: from its folder (ReportRun) or its index row
    (report_source.IndexedReportRun)."""

    run_id: str

    @property
    def seed(self) -> int: ...

    def field(self, name: str) -> Any: ...

    def value(self, checkpoint: str, split: str, name: str) -> float | None: ...

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]: ...


@dataclass(frozen=True)
class ReportRun:
    """A completed run: its id, config and metrics."""

    run_id: str
    config: ExperimentConfig
    metrics: Metrics

    @property
    def seed(self) -> int:
        return self.config.seed

    def field(self, name: str) -> Any:
        return field_value(self.config, name)

    def value(self, checkpoint: str, split: str, name: str) -> float | None:
        part = _split(self.metrics, checkpoint, split)
        return getattr(part, name) if part else None

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]:
        part = _split(self.metrics, checkpoint, split)
        return part.bins if part else []


def field_value(config: ExperimentConfig, field: str) -> Any:
    """A config value by dotted key, or `experiment` (its name) or `language` (its AT&T
    file's stem, else its name); pos_encoding of a recurrent model is None (it has none)."""
    flat = config_fields(config)
    if field not in flat:
        raise ReportError(f"unknown config field {field!r}; e.g. {', '.join(list(flat)[:8])}")
    return flat[field]


# ---------------------------------------------------------------------------- aggregation


def check_metric(name: str) -> tuple[str, str]:
    split, _, field = name.partition(".")
    if split not in SPLITS or field not in _NUMERIC:
        raise ReportError(
            f"unknown metric {name!r}; use <split>.<field>: split one of {', '.join(SPLITS)}, "
            f"field one of {', '.join(_NUMERIC)}"
        )
    return split, field


def _split(metrics: Metrics, checkpoint: str, split: str) -> SplitMetrics | None:
    return getattr(metrics.best if checkpoint == "best" else metrics.last, split)


def summarize(
    values: list[float | None], baselines: list[float | None] | None = None
) -> MetricStats:
    """n, mean, sample std (None below 2), min, max; the mean of the baselines beside them."""
    present = [v for v in values if v is not None]
    base = [b for b in (baselines or []) if b is not None]
    return MetricStats(
        n=len(present),
        mean=statistics.fmean(present) if present else None,
        std=statistics.stdev(present) if len(present) >= 2 else None,
        min=min(present) if present else None,
        max=max(present) if present else None,
        baseline=statistics.fmean(base) if base else None,
    )


def _bin_stats(runs: list[RunLike], name: str, checkpoint: str) -> list[BinStats]:
    split, field = check_metric(name)
    if field not in BinMetrics.model_fields:
        return []
    by_bin: dict[tuple[int, int], list[BinMetrics]] = {}
    for run in runs:
        for b in run.bins(checkpoint, split):
            by_bin.setdefault((b.lo, b.hi), []).append(b)
    base = BASELINES.get(field)
    return [
        BinStats(
            metric=name,
            lo=lo,
            hi=hi,
            stats=summarize(
                [getattr(b, field) for b in bins],
                [getattr(b, base) for b in bins] if base else None,
            ),
        )
        for (lo, hi), bins in sorted(by_bin.items())
    ]


def build_report(
    runs: Sequence[RunLike],
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    checkpoint: str = "best",
    bins: bool = False,
) -> Report:
    """Group `runs` by the `by` fields (sorted by group) and aggregate `metrics` over them."""
    by = by or DEFAULT_BY
    metrics = metrics or DEFAULT_METRICS
    parsed = {m: check_metric(m) for m in metrics}
    groups: dict[tuple[Any, ...], list[RunLike]] = {}
    for run in runs:
        key = tuple(run.field(f) for f in by)
        groups.setdefault(key, []).append(run)
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, str(v)) for v in k)):
        members = sorted(groups[key], key=lambda r: (r.seed, r.run_id))
        stats = {}
        for name, (split, field) in parsed.items():
            base = BASELINES.get(field)
            stats[name] = summarize(
                [r.value(checkpoint, split, field) for r in members],
                [r.value(checkpoint, split, base) for r in members] if base else None,
            )
        rows.append(
            ReportRow(
                group=dict(zip(by, key, strict=True)),
                n_runs=len(members),
                seeds=[r.seed for r in members],
                run_ids=[r.run_id for r in members],
                metrics=stats,
                bins=[b for m in metrics for b in _bin_stats(members, m, checkpoint)]
                if bins
                else [],
            )
        )
    return Report(by=by, metrics=metrics, checkpoint=checkpoint, rows=rows)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- flat tables

STAT_KEYS = ("mean", "std", "min", "max", "baseline")


def report_records(report: Report) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the long form: one row per group (bin 'all') and per bin."""
    with_bins = any(row.bins for row in report.rows)
    header = [*report.by, *(["bin"] if with_bins else []), "n"]
    header += [f"{m}.{s}" for m in report.metrics for s in STAT_KEYS]
    lines = []
    for row in report.rows:
        group = [row.group[f] for f in report.by]
        lines.append(
            [*group, *(["all"] if with_bins else []), row.n_runs]
            + [getattr(row.metrics[m], s) for m in report.metrics for s in STAT_KEYS]
        )
        spans = sorted({(b.lo, b.hi) for b in row.bins})
        for lo, hi in spans:
            cells: list[Any] = []
            for m in report.metrics:
                found = [b.stats for b in row.bins if b.metric == m and (b.lo, b.hi) == (lo, hi)]
                cells += [getattr(found[0], s) if found else None for s in STAT_KEYS]
            n = max((b.stats.n for b in row.bins if (b.lo, b.hi) == (lo, hi)), default=0)
            lines.append([*group, f"{lo}-{hi}", n, *cells])
    return header, lines


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def to_csv(report: Report) -> str:
    header, lines = report_records(report)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for line in lines:
        writer.writerow(["" if v is None else v for v in line])
    return out.getvalue()


def to_markdown(report: Report) -> str:
    """A GitHub table: group fields, n, then 'mean ± std' and the baseline of each metric."""
    with_bins = any(row.bins for row in report.rows)
    header, lines = report_records(report)
    lead = len(report.by) + (1 if with_bins else 0) + 1
    head = header[:lead] + [h for m in report.metrics for h in (m, f"{m} baseline")]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for line in lines:
        cells = [_text(v) or "-" for v in line[:lead]]
        for i in range(len(report.metrics)):
            mean, std, _lo, _hi, base = line[lead + 5 * i : lead + 5 * i + 5]
            shown = _text(mean) or "-"
            if std is not None:
                shown += f" ± {std:.4f}"
            cells += [shown, _text(base) or "-"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
