"""The runs a report aggregates. From the run index (what `fsmrun report` uses): each
config's newest completed run (repeats of a config and seed count once, as `dedupe` does),
with its group fields and metric values from its index row; a folder is opened only for what
the index does not hold: a run's whole config when its group has to be split (once per
seedless config), its length bins (`--bins`) or its analysis numbers. From the run folders
(`collect_runs`): every completed run read whole."""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from fsmrun.analysis.analysis_summary import analysis_numbers
from fsmrun.analysis.report import (
    ANALYSIS_PREFIX,
    BASELINES,
    PER_RUN_FIELDS,
    ReportError,
    ReportRun,
    check_metric,
    field_value,
    report_document,
)
from fsmrun.base.overrides import OverrideError, check_key
from fsmrun.runs.index_columns import DERIVED_FIELDS, metric_column, stored_seedless_fields
from fsmrun.runs.index_query import Condition, RunQuery
from fsmrun.runs.index_report import ROW_HEAD, ReportReader, ReportRows
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


def named_runs(root: Path, refs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The run folders `refs` name, in order and once each (the done cells of a sweep, the
    runs of an experiment), and a note for each sweep among them that is not finished (how
    many cells are done). Each sweep's cells are looked up once."""
    folders: list[Path] = []
    notes: list[str] = []
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
        done, counts = completed_runs(root, record)
        folders.extend(done)
        if counts["done"] < len(record.cells):
            rest = ", ".join(
                f"{counts[s]} {s.replace('todo', 'to do')}"
                for s in ("running", "interrupted", "failed", "todo")
                if counts[s]
            )
            notes.append(
                f"sweep {record.sweep_id} is not finished: {counts['done']} of "
                f"{len(record.cells)} cells done ({rest}); this report covers the done ones"
            )
    return list(dict.fromkeys(folders)), notes


def collect_runs(root: Path, refs: Iterable[str] = ()) -> list[ReportRun]:
    """Completed runs of the sweeps or experiments named in `refs` (all runs when empty)."""
    refs = list(refs)
    folders = named_runs(root, refs)[0] if refs else list(iter_run_folders(root))
    return [run for run in map(load_report_run, folders) if run is not None]


@dataclass
class _Source:
    """What the index rows of a report do not hold, fetched once each: a configuration's
    group fields and stored config (from one run of it, all configurations in one query),
    and whole runs read from their folders (`--bins`, analysis numbers, descriptions)."""

    root: Path
    positions: dict[tuple[str, str, str], int]  # (checkpoint, split, metric) -> row index
    own: dict[str, int]  # a run field (PER_RUN_FIELDS) -> row index
    fields: dict[str, dict[str, Any]]  # seedless key -> group fields of that configuration
    first: dict[str, str]  # seedless key -> the folder of one run of it
    configs: dict[str, dict[str, Any]]  # folder -> flattened config (runs read from folders)
    runs: dict[str, ReportRun | None] = field(default_factory=dict)
    fetched: bool = False

    def run(self, folder: str) -> ReportRun:
        if folder not in self.runs:
            self.runs[folder] = load_report_run(self.root / folder)
        run = self.runs[folder]
        if run is None:
            raise ReportError(
                f"{self.root / folder} changed while the report was made; run it again"
            )
        return run

    def config(self, key: str) -> dict[str, Any]:
        """The stored config of one run of configuration `key` (the first time, of one run
        of every configuration: a group that splits is rarely alone)."""
        if not self.fetched:
            missing = [f for f in self.first.values() if f not in self.configs]
            self.configs.update(ReportReader(self.root).stored(missing))
            self.fetched = True
        folder = self.first[key]
        if folder not in self.configs:
            raise ReportError(
                f"{self.root / folder} changed while the report was made; run it again"
            )
        return self.configs[folder]


class IndexedReportRun(tuple):  # type: ignore[type-arg]
    """A completed run as its index row gives it (see report.RunLike): the row of
    ReportReader.report_rows (ROW_HEAD, the run fields, the metric columns) and its _Source.
    A tuple: a report of 100,000 runs makes 100,000 of these."""

    __slots__ = ()
    run_id = property(itemgetter(0))
    folder = property(itemgetter(1))
    updated = property(itemgetter(2))
    key = property(itemgetter(4))  # its seedless_key
    seed = property(itemgetter(5))
    source = property(itemgetter(-1))

    def config_key(self) -> str:
        return self[1]  # its folder: already one run per config and seed

    def seedless_key(self) -> str:
        return self[4]

    def seedless_fields(self, whole: bool = False) -> dict[str, Any]:
        if whole:  # from its folder: the index keeps a recurrent model's pos_encoding as None
            return self[-1].run(self[1]).seedless_fields(whole=True)
        return stored_seedless_fields(self[-1].config(self[4]))

    def value(self, name: str) -> Any:
        source: _Source = self[-1]
        fields = source.fields[self[4]]  # the configuration's --by fields: asked most
        if name in fields:
            return fields[name]
        if is_tag_field(name):
            return tag_value(json.loads(self[6]) if self[6] else {}, name)
        if name == "seed":
            return self[5]
        if name in source.own:
            return self[source.own[name]]
        if name in UNINDEXED:
            return field_value(source.run(self[1]).config, name)
        return source.config(self[4]).get(name)  # a field that splits a group

    def metric(self, checkpoint: str, split: str, name: str) -> float | None:
        return self[self[-1].positions[checkpoint, split, name]]

    def metric_getter(
        self, checkpoint: str, split: str, name: str
    ) -> Callable[[IndexedReportRun], float | None]:
        return itemgetter(self[-1].positions[checkpoint, split, name])

    def analysis_value(self, name: str) -> float | None:
        return self[-1].run(self[1]).analysis_value(name)

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]:
        return self[-1].run(self[1]).bins(checkpoint, split)


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


def report_folders(root: Path, refs: Iterable[str]) -> tuple[frozenset[str] | None, list[str]]:
    """The run folders (relative to `root`) that `refs` name (None for every run), and the
    notes of unfinished sweeps among them."""
    refs = list(refs)
    if not refs:
        return None, []
    folders, notes = named_runs(root, refs)
    prefix = f"{os.fspath(root)}/"
    relative = {
        text[len(prefix) :] if (text := os.fspath(p)).startswith(prefix)
        else p.relative_to(root).as_posix()
        for p in folders
    }  # fmt: skip
    return frozenset(relative), notes


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
    found, make, _ = _query(root, refs, by, metrics, checkpoint, where)
    if (again := found.recheck()) is not None:
        found = again
    return make(found)


def indexed_report(
    root: Path,
    refs: Iterable[str],
    by: list[str],
    metrics: list[str],
    checkpoint: str,
    where: Sequence[Condition] = (),
    built: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> tuple[dict[str, Any], list[IndexedReportRun]]:
    """`report_document` (with `options`) of `collect_indexed_runs`, its notes led by those
    of the unfinished sweeps among `refs`, and the runs. With many runs the folders are
    checked beside the aggregation (ReportReader.report_rows), which is done again if one
    changed. `built(doc)` is called as soon as the report is built, while the check may
    still be running (a caller can encode it meanwhile), and again if it is built again."""
    with gc_paused():
        found, make, unfinished = _query(root, refs, by, metrics, checkpoint, where)

        def document(found: ReportRows) -> tuple[dict[str, Any], list[IndexedReportRun]]:
            runs, repeats = make(found)
            doc = report_document(runs, by, metrics, checkpoint, repeats=repeats, **options)
            doc["notes"] = unfinished + doc["notes"]
            if built is not None:
                built(doc)
            return doc, runs

        doc, runs = document(found)
        if (again := found.recheck()) is not None:
            doc, runs = document(again)
    return doc, runs


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a report builds its objects: they make no cycles,
    and at 100,000 runs the collector's passes over them took 40% of the time. Nested, the
    outer one turns it back on (`fsmrun report` pauses it until it has written the report
    and freed its objects: turned on with them alive, the next collection goes over them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _query(
    root: Path,
    refs: Iterable[str],
    by: Sequence[str],
    metrics: Sequence[str],
    checkpoint: str,
    where: Sequence[Condition],
) -> tuple[ReportRows, Callable[[ReportRows], tuple[list[IndexedReportRun], int]], list[str]]:
    """The index rows a report needs, how to make its runs of them, and the notes of the
    unfinished sweeps among `refs`."""
    fields = [f for f in index_fields(by) if f != "seed"]
    own = [f for f in fields if f in PER_RUN_FIELDS]
    shared = [f for f in fields if f not in PER_RUN_FIELDS]
    positions: dict[tuple[str, str, str], int] = {}
    columns: list[str] = []
    for name in metrics:
        split, metric = check_metric(name)
        if split == ANALYSIS_PREFIX:
            continue  # read from the folders of the runs reported
        for part in (metric, BASELINES.get(metric)):
            if part is not None and (checkpoint, split, part) not in positions:
                positions[checkpoint, split, part] = len(columns)
                columns.append(metric_column(checkpoint, split, part))
    folders, notes = report_folders(root, refs)
    query = RunQuery(status="completed", where=tuple(where), folders=folders)
    reader = ReportReader(root)
    with_tags = any(map(is_tag_field, by))
    found = reader.report_rows(query, own, shared, columns, with_tags=with_tags)

    def make(found: ReportRows) -> tuple[list[IndexedReportRun], int]:
        return _runs_of(reader.root, found, own, positions), found.total - len(found.rows)

    return found, make, notes


def _runs_of(
    root: Path,
    found: ReportRows,
    own: list[str],
    positions: dict[tuple[str, str, str], int],
) -> list[IndexedReportRun]:
    """IndexedReportRuns of the rows, sharing one _Source."""
    head = len(ROW_HEAD)
    source = _Source(
        root,
        {key: head + len(own) + i for key, i in positions.items()},
        {name: head + i for i, name in enumerate(own)},
        found.fields,
        found.first,
        dict(found.configs),
    )
    tail = (source,)
    return [IndexedReportRun(values + tail) for values in found.rows]


def full_runs(runs: Iterable[IndexedReportRun]) -> list[ReportRun]:
    """The whole runs (config and metrics read from their folders), for what needs them (the
    published numbers beside a suite)."""
    return [run.source.run(run.folder) for run in runs]
