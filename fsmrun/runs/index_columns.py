"""What the index keeps of one run folder besides its RunRow: the folder's mtime (to notice a
changed folder without parsing it), the flattened config (for `--where` and report groups),
every per-split metric of both checkpoints (what `report` aggregates) and the run's tags."""

from __future__ import annotations

import json
import logging
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsmrun.base.hashing import UNHASHED, canonical_json, sha256_text, unhashed_fields
from fsmrun.base.io import read_small_file
from fsmrun.base.overrides import flatten
from fsmrun.runs.layout import ResultsFolderError
from fsmrun.runs.run_folder import (
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    RUN_FILE,
    RunFolderError,
    read_model_file,
)
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import Metrics, RunRecord, SplitMetrics
from fsmrun.schemas.run_row import RunRow

log = logging.getLogger(__name__)

# Tags a user attaches to a run, kept in a JSON object beside its other files (`fsmrun tag`).
TAGS_FILE = LABELS_FILE  # labels.json: {"tags": {...}, "note": ...}
TAG_PREFIX = "tag."
CHECKPOINTS = ("best", "last")
METRIC_SPLITS = ("val", "test", "test_ood")
METRIC_FIELDS = tuple(name for name in SplitMetrics.model_fields if name != "bins")
# Derived fields stored beside the config's own: `experiment` (its name) and `language`
# (the stem of its AT&T file, else the experiment name), so filters and groups can use them.
DERIVED_FIELDS = ("experiment", "language")
_UNSTORED = ("name", "description")  # the name is stored as `experiment`; prose is no group


def metric_column(checkpoint: str, split: str, field: str) -> str:
    """The index column of one metric, e.g. best__test__string_acc."""
    return f"{checkpoint}__{split}__{field}"


METRIC_COLUMNS = tuple(
    metric_column(c, s, f) for c in CHECKPOINTS for s in METRIC_SPLITS for f in METRIC_FIELDS
)
_METRIC_PARTS = [  # (checkpoint, split, its fields' names, their columns)
    (c, s, operator.itemgetter(*METRIC_FIELDS), [metric_column(c, s, f) for f in METRIC_FIELDS])
    for c in CHECKPOINTS
    for s in METRIC_SPLITS
]
RUN_COLUMN_TYPES = {  # one column per RunRow field, in its order
    "run_id": "TEXT PRIMARY KEY",
    "experiment": "TEXT NOT NULL",
    "config_hash": "TEXT NOT NULL",
    "version": "INTEGER NOT NULL",
    "folder": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",  # as recorded; rows() applies effective_status
    "created": "REAL NOT NULL",
    "updated": "REAL NOT NULL",
    "hostname": "TEXT NOT NULL",
    "pid": "INTEGER",
    "heartbeat": "REAL NOT NULL",
    "device": "TEXT NOT NULL",
    "amp": "INTEGER NOT NULL",
    "deterministic": "INTEGER NOT NULL",
    "steps": "INTEGER NOT NULL",
    "epochs": "INTEGER NOT NULL",
    "times_resumed": "INTEGER NOT NULL",
    "stop_reason": "TEXT",
    "best_val_metric": "TEXT",
    "best_val_value": "REAL",
    "test_string_acc": "REAL",
    "test_ood_string_acc": "REAL",
    "wall_time_s": "REAL",
    "audit_verified": "INTEGER",
}
RUN_COLUMNS = tuple(RUN_COLUMN_TYPES)
# RunRow's tags live in the `tags` column (JSON, beside the config); every other field has its own.
assert tuple(f for f in RunRow.model_fields if f != "tags") == RUN_COLUMNS, "columns follow RunRow"
EXTRA_COLUMN_TYPES = {
    "folder_mtime_ns": "INTEGER",  # NULL: unknown, the folder is read at every listing
    # What `report` groups by, so it reads no folder: config_hash() of config.json (a repeat
    # of a config and seed has the same), the hash of seedless_fields() (the seeds of one
    # configuration share it) and the seed; NULL without config.json.
    "config_key": "TEXT",
    "seedless_key": "TEXT",
    "seed": "INTEGER",
    **dict.fromkeys(METRIC_COLUMNS, "REAL"),
    # The wide text columns come last: a row longer than a page spills its tail into
    # overflow pages, and a scan of the narrow columns before them never reads those.
    "config": "TEXT",  # JSON object of config_fields(); NULL without config.json
    "tags": "TEXT",  # JSON object; NULL without tags
    "row_json": "TEXT",  # the RunRow as `ls --json` prints it: streamed without re-validation
}
COLUMN_TYPES = {**RUN_COLUMN_TYPES, **EXTRA_COLUMN_TYPES}
COLUMNS = tuple(COLUMN_TYPES)


@dataclass(frozen=True)
class IndexedRun:
    """One run folder as the index stores it."""

    row: RunRow
    mtime_ns: int | None
    config: dict[str, Any] | None
    metrics: dict[str, float | None]
    tags: dict[str, Any] | None
    config_key: str | None = None
    seedless_key: str | None = None

    def values(self) -> tuple[Any, ...]:
        """The row's column values: the RunRow fields, then EXTRA_COLUMN_TYPES, in order."""
        config = None if self.config is None else json.dumps(self.config, separators=(",", ":"))
        tags = None if self.tags is None else json.dumps(self.tags, separators=(",", ":"))
        metrics = self.metrics
        return (
            *(getattr(self.row, name) for name in RUN_COLUMNS),
            self.mtime_ns,
            self.config_key,
            self.seedless_key,
            None if self.config is None else self.config.get("seed"),
            *[metrics.get(c) for c in METRIC_COLUMNS],
            config,
            tags,
            self.row.model_dump_json(),
        )


def config_fields(config: ExperimentConfig, dumped: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config flattened to dotted keys plus the derived fields; a recurrent model's
    pos_encoding is None (it has none), so it neither groups nor matches. `dumped`: the
    config's model_dump(mode="json"), when the caller has it."""
    flat = flatten(dumped if dumped is not None else config.model_dump(mode="json"))
    for key in _UNSTORED:
        flat.pop(key, None)
    if config.model.arch != "transformer":
        flat["model.pos_encoding"] = None
    return {"experiment": config.name, "language": language_of(config), **flat}


def seedless_fields(config: ExperimentConfig, whole: bool = False) -> dict[str, Any]:
    """The flat config fields that make one configuration, as JSON decodes them: all but the
    seed and the fields config_hash leaves out (name, description, logging), plus
    'experiment' (the name). Runs that differ only in their seed have equal seedless fields.
    A recurrent model's pos_encoding (it has no positions; the index keeps None) is left out
    unless `whole`."""
    doc = _without(config.model_dump(mode="json"), UNHASHED)
    flat = {k: v for k, v in flatten(doc).items() if k != "seed"}
    if not whole and config.model.arch != "transformer":
        del flat["model.pos_encoding"]
    flat["experiment"] = config.name
    return flat


_NOT_SEEDLESS = frozenset(["seed", "language", "experiment", *unhashed_fields()])


def stored_seedless_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """`seedless_fields` of a run from its flattened config as the index stores it
    (`config_fields`), without its folder: the same fields in the same order."""
    flat = dict(stored)  # a copy less the few left out: 33,334 of them split a report
    for name in _NOT_SEEDLESS:
        flat.pop(name, None)
    if stored.get("model.arch") != "transformer":
        flat.pop("model.pos_encoding", None)
    flat["experiment"] = stored["experiment"]
    return flat


def seedless_key(config: ExperimentConfig, hashed: dict[str, Any] | None = None) -> str:
    """What the index stores as `seedless_key`: equal for two configs exactly when their
    `seedless_fields` are equal (the same nested values, hashed whole: one JSON encoding
    instead of one per field). `hashed`: the config's dump without the UNHASHED fields."""
    doc = hashed if hashed is not None else _without(config.model_dump(mode="json"), UNHASHED)
    return sha256_text(canonical_json({**doc, "seed": None, "name": config.name}))


def _without(doc: dict[str, Any], drop: Any) -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        if drop.get(key) is True:
            continue
        inner = drop.get(key)
        out[key] = _without(value, inner) if inner and isinstance(value, dict) else value
    return out


def language_of(config: ExperimentConfig) -> str:
    """A run's `language`: the stem of its AT&T file (a language-folder sweep names its cells
    after the files), else the experiment's name."""
    att = config.data.att
    return Path(att.path).stem if att is not None else config.name


def metric_values(metrics: Metrics | None) -> dict[str, float | None]:
    """Every metric column of `metrics` ({} before the run has finished once)."""
    values: dict[str, float | None] = {}
    if metrics is None:
        return values
    for checkpoint, split, fields, columns in _METRIC_PARTS:
        part = getattr(getattr(metrics, checkpoint), split)
        if part is not None:  # its field values, as one C call (a reindex makes 600,000)
            values.update(zip(columns, fields(part.__dict__), strict=True))
    return values


def read_tags(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's tags ({key: value}), None without a tags file; a damaged one is skipped."""
    path = f"{os.fspath(folder)}/{TAGS_FILE}"
    try:
        doc = json.loads(read_small_file(path))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); its tags are left out", path, exc)
        return None
    if isinstance(doc, dict) and isinstance(doc.get("tags"), dict):
        doc = doc["tags"]
    return doc if isinstance(doc, dict) else None


def relative_folder(root: Path, folder: Path) -> str:
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as exc:
        raise ResultsFolderError(f"{folder} is not inside the results folder {root}") from exc


def _optional(path: str, model: type[Any]) -> Any:
    """The file as `model`, None if missing; an unreadable one is skipped with a warning."""
    try:
        return read_model_file(path, model, optional=True)
    except RunFolderError as exc:
        log.warning("%s", exc)
        return None


def read_indexed_run(
    root: str | os.PathLike[str], folder: str | os.PathLike[str], rel: str | None = None
) -> IndexedRun:
    """Read run.json, metrics.json, config.json and the tags of `folder` (status as recorded);
    an unreadable metrics.json or config.json is skipped with a warning. `rel`: the folder
    relative to `root`, when the caller knows it. The folder's mtime is taken first, so a
    change made while it is read shows as a change at the next listing.

    A reindex reads every run folder with this (100,000 at benchmark scale): it uses plain
    string paths and each file's model once (profiled: pathlib and repeated dumps cost more
    than the parsing)."""
    folder_s = os.fspath(folder)
    try:
        mtime_ns: int | None = os.stat(folder_s).st_mtime_ns
    except OSError:
        mtime_ns = None
    record: RunRecord = read_model_file(f"{folder_s}/{RUN_FILE}", RunRecord, optional=False)
    metrics: Metrics | None = _optional(f"{folder_s}/{METRICS_FILE}", Metrics)
    config: ExperimentConfig | None = _optional(f"{folder_s}/{CONFIG_FILE}", ExperimentConfig)
    best = metrics.best if metrics else None
    tags = read_tags(folder_s)
    row = RunRow(
        run_id=record.run_id,
        experiment=record.experiment,
        config_hash=record.config_hash,
        version=record.version,
        folder=rel if rel is not None else relative_folder(Path(root), Path(folder_s)),
        status=record.status,
        created=record.created,
        updated=record.updated,
        hostname=record.hostname,
        pid=record.pid,
        heartbeat=record.heartbeat,
        device=record.device,
        amp=record.amp,
        deterministic=record.deterministic,
        # steps only grow: whichever file was written last holds the larger count
        steps=max(record.steps, metrics.steps if metrics else 0),
        epochs=max(record.epochs, metrics.epochs if metrics else 0),
        times_resumed=record.times_resumed,
        stop_reason=metrics.stop_reason if metrics else None,
        best_val_metric=metrics.monitor if metrics else None,
        best_val_value=metrics.early_stop.best_value if metrics else None,
        test_string_acc=best.test.string_acc if best else None,
        test_ood_string_acc=best.test_ood.string_acc if best and best.test_ood else None,
        wall_time_s=metrics.wall_time_s if metrics else None,
        audit_verified=record.audit_verified,
        tags=tags or {},
    )
    if config is None:
        return IndexedRun(row, mtime_ns, None, metric_values(metrics), tags)
    dumped = config.model_dump(mode="json")
    hashed = _without(dumped, UNHASHED)
    return IndexedRun(
        row=row,
        mtime_ns=mtime_ns,
        config=config_fields(config, dumped),
        metrics=metric_values(metrics),
        tags=tags,
        config_key=sha256_text(canonical_json(hashed)),  # config_hash(config), one dump fewer
        seedless_key=seedless_key(config, hashed),
    )
