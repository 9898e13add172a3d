"""The runs a report aggregates, read from the index: each completed run's group fields and
metric values come from its index row (no run folder is opened but those the index does not
describe yet, and, for `--bins`, the metrics.json of the runs reported)."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsmrun.analysis.report import BASELINES, ReportError, check_metric
from fsmrun.base.overrides import OverrideError, check_key
from fsmrun.runs.index import RunIndex
from fsmrun.runs.index_columns import DERIVED_FIELDS, metric_column
from fsmrun.runs.index_query import Condition, RunQuery
from fsmrun.runs.layout import is_plain_name
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.records import BinMetrics
from fsmrun.sweeps.coordinator import SweepError, find_sweep, read_record


@dataclass(frozen=True)
class IndexedReportRun:
    """A completed run as its index row gives it: the fields grouped by and the metrics
    of one checkpoint (`values` by (split, field)); length bins read on demand."""

    run_id: str
    folder: Path
    seed: int
    fields: dict[str, Any]
    values: dict[tuple[str, str], float | None]
    _bins: dict[tuple[str, str], list[BinMetrics]] = field(default_factory=dict, compare=False)

    def field(self, name: str) -> Any:
        return self.fields[name]

    def value(self, checkpoint: str, split: str, name: str) -> float | None:
        return self.values.get((split, name))

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]:
        """Length bins of one split, from the run's metrics.json ([] if unreadable)."""
        if (checkpoint, split) not in self._bins:
            try:
                metrics = RunFolder(self.folder).read_metrics()
            except RunFolderError:
                metrics = None
            evaluation = getattr(metrics, checkpoint) if metrics else None
            part = getattr(evaluation, split) if evaluation else None
            self._bins[(checkpoint, split)] = part.bins if part else []
        return self._bins[(checkpoint, split)]


def _identity(value: Any) -> Any:
    return value


def field_decoder(key: str) -> Callable[[Any], Any]:
    """How a config field's value comes back from the index: SQLite gives JSON booleans as
    0/1 and lists as JSON text; ReportError for a key that names no config value."""
    if key in DERIVED_FIELDS:
        return _identity
    try:
        model = check_key(key)
    except OverrideError as exc:
        raise ReportError(f"unknown config field {key!r}: {exc}") from None
    kinds = typing.get_args(model.model_fields[key.rsplit(".", 1)[-1]].annotation)
    kinds = kinds or (model.model_fields[key.rsplit(".", 1)[-1]].annotation,)
    if bool in kinds:
        return lambda v: v if v is None else bool(v)
    if any(typing.get_origin(k) in (list, tuple) or k in (list, tuple) for k in kinds):
        return lambda v: json.loads(v) if isinstance(v, str) else v
    return _identity


def _queries(root: Path, refs: Iterable[str], base: RunQuery) -> list[tuple[RunQuery, bool]]:
    """One query per ref (a sweep: its cells' configs, once each; an experiment), or all."""
    queries = []
    for ref in refs:
        try:
            record = read_record(find_sweep(root, ref))
        except SweepError:
            if not (is_plain_name(ref) and (root / ref).is_dir()):
                raise ReportError(
                    f"{ref!r} is neither a sweep nor an experiment with runs under {root}"
                ) from None
            queries.append((_replace(base, experiment=ref), False))
            continue
        hashes = frozenset(cell.config_hash for cell in record.cells)
        queries.append((_replace(base, config_hashes=hashes), True))
    return queries or [(base, False)]


def _replace(query: RunQuery, **changes: Any) -> RunQuery:
    return dataclasses.replace(query, **changes)


def collect_runs(
    root: Path,
    refs: Iterable[str],
    by: list[str],
    metrics: list[str],
    checkpoint: str,
    where: Iterable[Condition] = (),
) -> list[IndexedReportRun]:
    """Completed runs of the sweeps or experiments named in `refs` (all runs when empty)
    matching `where`, with the `by` fields and the `metrics` (and their baselines) of
    `checkpoint`. A sweep counts each cell's config once (its oldest completed run)."""
    decoders = [field_decoder(f) for f in ["seed", *by]]
    wanted: list[tuple[str, str]] = []
    for name in metrics:
        split, metric = check_metric(name)
        wanted.append((split, metric))
        if metric in BASELINES:
            wanted.append((split, BASELINES[metric]))
    wanted = list(dict.fromkeys(wanted))
    columns = [metric_column(checkpoint, split, metric) for split, metric in wanted]
    base = RunQuery(status="completed", where=tuple(where))
    index = RunIndex(root)
    runs: dict[str, IndexedReportRun] = {}
    for query, once_per_config in _queries(root, refs, base):
        oldest: dict[str, tuple[int, str]] = {}
        for values in index.values(query, ["seed", *by], columns):
            run_id, folder, config_hash, version = values[:4]
            if once_per_config:
                if config_hash in oldest and oldest[config_hash][0] < version:
                    continue
                if config_hash in oldest:
                    runs.pop(oldest[config_hash][1], None)
                oldest[config_hash] = (version, folder)
            fields = [d(v) for d, v in zip(decoders, values[4 : 5 + len(by)], strict=True)]
            runs[folder] = IndexedReportRun(
                run_id=run_id,
                folder=root / folder,
                seed=fields[0],
                fields=dict(zip(by, fields[1:], strict=True)),
                values=dict(zip(wanted, values[5 + len(by) :], strict=True)),
            )
    return list(runs.values())
