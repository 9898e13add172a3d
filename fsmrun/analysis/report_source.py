"""The runs a report aggregates. From the run index (what `fsmrun report` uses): each
config's newest completed run (repeats of a config and seed count once, as `dedupe` does),
with its group fields and metric values from its index row; a folder is opened only for what
the index does not hold: a run's whole config when its group has to be split (once per
seedless config), its length bins (`--bins`) or its analysis numbers. From the run folders
(`collect_runs`): every completed run read whole."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsmrun.analysis.analysis_summary import analysis_numbers
from fsmrun.analysis.report import (
    ANALYSIS_PREFIX,
    BASELINES,
    ReportError,
    ReportRun,
    check_metric,
    field_value,
)
from fsmrun.base.overrides import OverrideError, check_key
from fsmrun.runs.index_columns import DERIVED_FIELDS, metric_column
from fsmrun.runs.index_query import Condition, RunQuery
from fsmrun.runs.index_read import IndexReader
from fsmrun.runs.labels import is_tag_field, tag_value
from fsmrun.runs.layout import iter_run_folders
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import BinMetrics
from fsmrun.sweeps.coordinator import AmbiguousSweep, completed_runs, read_record, resolve_sweep
from fsmrun.sweeps.spec import SweepError


def load_report_run(path: Path) -> ReportRun | None:
    """The run in folder `path` if it completed (with its config and metrics), else None."""
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
    return ReportRun(
        record.run_id,
        config,
        metrics,
        analysis=_analysis(folder, config),
        tags=folder.read_labels().tags,
        updated=record.updated,
    )


def _analysis(folder: RunFolder, config: ExperimentConfig) -> dict[str, float | None] | None:
    """The run's analysis numbers (see analysis_summary.ANALYSIS_NUMBERS), None if none."""
    try:
        report = folder.read_analysis()
    except RunFolderError:
        return None
    ood = config.data.ood_min_len if config.data.n_test_ood else None
    return None if report is None else analysis_numbers(report, ood)


def named_folders(root: Path, refs: Iterable[str]) -> list[Path]:
    """The run folders `refs` name, in order and once each: the done cells of a sweep, the
    runs of an experiment."""
    folders: list[Path] = []
    for ref in refs:
        try:
            record = read_record(resolve_sweep(root, ref))
        except AmbiguousSweep:
            raise
        except SweepError:
            found = list(iter_run_folders(root, ref))
            if not found:
                raise ReportError(
                    f"{ref!r} is neither a sweep nor an experiment with runs under {root}"
                ) from None
            folders.extend(found)
            continue
        folders.extend(completed_runs(root, record)[0])
    return list(dict.fromkeys(folders))


def collect_runs(root: Path, refs: Iterable[str] = ()) -> list[ReportRun]:
    """Completed runs of the sweeps or experiments named in `refs` (all runs when empty)."""
    refs = list(refs)
    folders = named_folders(root, refs) if refs else list(iter_run_folders(root))
    return [run for run in map(load_report_run, folders) if run is not None]


def sweep_notes(root: Path, refs: Iterable[str]) -> list[str]:
    """One line per sweep among `refs` that is not finished: how many cells are done."""
    notes = []
    for ref in refs:
        try:
            record = read_record(resolve_sweep(root, ref))
        except SweepError:
            continue
        _, counts = completed_runs(root, record)
        done, total = counts["done"], len(record.cells)
        if done < total:
            rest = ", ".join(
                f"{counts[s]} {s.replace('todo', 'to do')}"
                for s in ("running", "interrupted", "failed", "todo")
                if counts[s]
            )
            notes.append(
                f"sweep {record.sweep_id} is not finished: {done} of {total} cells done "
                f"({rest}); this report covers the done ones"
            )
    return notes


@dataclass
class _Folders:
    """Whole runs read from their folders on demand, once each: per folder, and per seedless
    key for the config fields (runs that share one have the same values)."""

    root: Path
    runs: dict[str, ReportRun | None] = field(default_factory=dict)
    by_seedless: dict[str, ReportRun] = field(default_factory=dict)

    def run(self, folder: str) -> ReportRun:
        if folder not in self.runs:
            self.runs[folder] = load_report_run(self.root / folder)
        run = self.runs[folder]
        if run is None:
            raise ReportError(
                f"{self.root / folder} changed while the report was made; run it again"
            )
        return run


@dataclass
class IndexedReportRun:
    """A completed run as its index row gives it (see report.RunLike)."""

    run_id: str
    folder: str
    updated: float
    seed: int
    key: str  # its seedless_key
    fields: dict[str, Any]  # the --by and --where fields, as field_value gives them
    tags: dict[str, Any]
    columns: dict[str, float | None]  # metric column -> value
    source: _Folders

    def config_key(self) -> str:
        return self.folder  # already one run per config and seed

    def seedless_key(self) -> str:
        return self.key

    def seedless_fields(self) -> dict[str, str]:
        return self._seedless_run().seedless_fields()

    def value(self, name: str) -> Any:
        if is_tag_field(name):
            return tag_value(self.tags, name)
        if name in self.fields:
            return self.fields[name]
        if name in UNINDEXED:
            return field_value(self.source.run(self.folder).config, name)
        # A field that splits a group: the same for every run of this seedless config.
        return field_value(self._seedless_run().config, name)

    def metric(self, checkpoint: str, split: str, name: str) -> float | None:
        return self.columns[metric_column(checkpoint, split, name)]

    def analysis_value(self, name: str) -> float | None:
        return self.source.run(self.folder).analysis_value(name)

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]:
        return self.source.run(self.folder).bins(checkpoint, split)

    def _seedless_run(self) -> ReportRun:
        run = self.source.by_seedless.get(self.key)
        if run is None:
            run = self.source.by_seedless[self.key] = self.source.run(self.folder)
        return run


UNINDEXED = ("description",)  # prose: read from the run's folder when grouped by


def index_fields(names: Iterable[str]) -> list[str]:
    """The config fields among `names` that the index holds (tags and UNINDEXED left out);
    ReportError for one that names no config field."""
    fields = []
    for name in dict.fromkeys(names):
        if is_tag_field(name) or name in UNINDEXED:
            continue
        if name in DERIVED_FIELDS:
            fields.append(name)
            continue
        try:
            check_key(name)
        except OverrideError:
            raise ReportError(f"unknown config field {name!r}") from None
        fields.append(name)
    return fields


def report_folders(root: Path, refs: Iterable[str]) -> frozenset[str] | None:
    """The run folders (relative to `root`) that `refs` name; None for every run."""
    refs = list(refs)
    if not refs:
        return None
    return frozenset(p.relative_to(root).as_posix() for p in named_folders(root, refs))


def collect_indexed_runs(
    root: Path,
    refs: Iterable[str],
    by: Sequence[str],
    metrics: Sequence[str],
    checkpoint: str,
    where: Sequence[Condition] = (),
) -> tuple[list[IndexedReportRun], int]:
    """The newest completed run of each config among those `refs` name (all runs when
    empty) that match `where`, with the `by` fields and the `metrics` (and baselines) of
    `checkpoint`; and how many repeated runs were left out."""
    fields = index_fields(["seed", *by])
    columns: list[str] = []
    for name in metrics:
        split, metric = check_metric(name)
        if split == ANALYSIS_PREFIX:
            continue  # read from the folders of the runs reported
        columns.append(metric_column(checkpoint, split, metric))
        if metric in BASELINES:
            columns.append(metric_column(checkpoint, split, BASELINES[metric]))
    columns = list(dict.fromkeys(columns))
    query = RunQuery(status="completed", where=tuple(where), folders=report_folders(root, refs))
    total, rows = IndexReader(root).newest_per_config(query, fields, columns)
    source = _Folders(root)
    runs = []
    for values in rows:
        run_id, folder, updated, key, tags = values[:5]
        found = dict(zip(fields, values[5 : 5 + len(fields)], strict=True))
        runs.append(
            IndexedReportRun(
                run_id=run_id,
                folder=folder,
                updated=updated,
                seed=found["seed"],
                key=key,
                fields=found,
                tags=_tags(tags),
                columns=dict(zip(columns, values[5 + len(fields) :], strict=True)),
                source=source,
            )
        )
    return runs, total - len(runs)


def _tags(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def full_runs(runs: Iterable[IndexedReportRun]) -> list[ReportRun]:
    """The whole runs (config and metrics read from their folders), for what needs them (the
    published numbers beside a suite)."""
    return [run.source.run(run.folder) for run in runs]
