"""Reports: completed runs grouped by config fields and aggregated over seeds (n, mean, std,
min, max of chosen metrics beside their baselines, optionally per length bin). No torch.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsmrun.base.errors import UserError
from fsmrun.base.overrides import flatten
from fsmrun.runs.layout import iter_run_folders
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import BinMetrics, Metrics, SplitMetrics
from fsmrun.schemas.sweep import BinStats, MetricStats, Report, ReportRow
from fsmrun.sweeps.cells import cell_state
from fsmrun.sweeps.coordinator import SweepError, find_sweep, read_record

DEFAULT_BY = ["experiment", "model.arch", "model.pos_encoding"]
DEFAULT_METRICS = ["test.string_acc", "test_ood.string_acc"]
SPLITS = ("val", "test", "test_ood")
BASELINES = {"string_acc": "string_baseline", "class_acc": "class_baseline"}
_NUMERIC = [
    name for name, f in SplitMetrics.model_fields.items() if name not in ("n_strings", "bins")
]


class ReportError(UserError):
    """An unknown metric, field or selection."""


@dataclass(frozen=True)
class ReportRun:
    """A completed run: its id, config and metrics."""

    run_id: str
    config: ExperimentConfig
    metrics: Metrics


# ---------------------------------------------------------------------------- selection


def _completed(path: Path) -> ReportRun | None:
    folder = RunFolder(path)
    try:
        record = folder.read_record()
        if record.status != "completed":
            return None
        config, metrics = folder.read_config(), folder.read_metrics()
    except RunFolderError:
        return None
    if config is None or metrics is None:
        return None
    return ReportRun(record.run_id, config, metrics)


def collect_runs(root: Path, refs: Iterable[str] = ()) -> list[ReportRun]:
    """Completed runs of the sweeps or experiments named in `refs` (all runs when empty)."""
    folders: list[Path] = []
    for ref in refs:
        try:
            record = read_record(find_sweep(root, ref))
        except SweepError:
            found = list(iter_run_folders(root, ref))
            if not found:
                raise ReportError(
                    f"{ref!r} is neither a sweep nor an experiment with runs under {root}"
                ) from None
            folders.extend(found)
            continue
        for cell in record.cells:
            state = cell_state(root, cell.experiment, cell.config_hash, None)
            if state.status == "done" and state.folder is not None:
                folders.append(state.folder)
    if not refs:
        folders = list(iter_run_folders(root))
    runs = [run for run in map(_completed, dict.fromkeys(folders)) if run is not None]
    return runs


def field_value(config: ExperimentConfig, field: str) -> Any:
    """A config value by dotted key ('experiment' for the name); pos_encoding of a recurrent
    model is None (it has none)."""
    flat = flatten(config.model_dump(mode="json"))
    flat["experiment"] = flat.pop("name")
    if field not in flat:
        raise ReportError(f"unknown config field {field!r}; e.g. {', '.join(list(flat)[:8])}")
    if field == "model.pos_encoding" and config.model.arch != "transformer":
        return None
    return flat[field]


def filter_runs(runs: list[ReportRun], where: dict[str, str]) -> list[ReportRun]:
    """Runs whose config fields equal the given values (compared as text)."""
    return [r for r in runs if all(str(field_value(r.config, k)) == v for k, v in where.items())]


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


def _bin_stats(runs: list[ReportRun], name: str, checkpoint: str) -> list[BinStats]:
    split, field = check_metric(name)
    if field not in BinMetrics.model_fields:
        return []
    by_bin: dict[tuple[int, int], list[BinMetrics]] = {}
    for run in runs:
        metrics = _split(run.metrics, checkpoint, split)
        for b in metrics.bins if metrics else []:
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
    runs: list[ReportRun],
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    checkpoint: str = "best",
    bins: bool = False,
) -> Report:
    """Group `runs` by the `by` fields (sorted by group) and aggregate `metrics` over them."""
    by = by or DEFAULT_BY
    metrics = metrics or DEFAULT_METRICS
    parsed = {m: check_metric(m) for m in metrics}
    groups: dict[tuple[Any, ...], list[ReportRun]] = {}
    for run in runs:
        key = tuple(field_value(run.config, f) for f in by)
        groups.setdefault(key, []).append(run)
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, str(v)) for v in k)):
        members = sorted(groups[key], key=lambda r: (r.config.seed, r.run_id))
        stats = {}
        for name, (split, field) in parsed.items():
            parts = [_split(r.metrics, checkpoint, split) for r in members]
            base = BASELINES.get(field)
            stats[name] = summarize(
                [getattr(p, field) if p else None for p in parts],
                [getattr(p, base) if p else None for p in parts] if base else None,
            )
        rows.append(
            ReportRow(
                group=dict(zip(by, key, strict=True)),
                n_runs=len(members),
                seeds=[r.config.seed for r in members],
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
