"""What `report` reads of the run index: the newest run of each config with the values a
report aggregates (narrow columns, one query), and the config fields of one run per
configuration. At 100,000 runs the freshness check (a stat of every folder) costs as much as
the rest of the report, so with a second core a child process starts on it meanwhile, and
the caller takes the batches the child has not come to when it rechecks at the end
(`ReportRows.recheck`; index_scan.Share)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fsmrun.runs.index_columns import COLUMN_TYPES
from fsmrun.runs.index_folders import PARALLEL_MIN
from fsmrun.runs.index_known import Forked, can_fork, changes_by_uri, keep_newest, known_loader
from fsmrun.runs.index_query import RunQuery, json_path
from fsmrun.runs.index_read import IndexReader, check_filters
from fsmrun.runs.index_scan import Changes, Share, find_changes, merge
from fsmrun.runs.layout import ResultsFolderError

log = logging.getLogger(__name__)

# The leading values of each row `ReportReader.report_rows` gives; then the run fields, then
# the columns.
ROW_HEAD = ("run_id", "folder", "updated", "config_key", "seedless_key", "seed", "tags")


def _unchanged() -> ReportRows | None:
    return None


@dataclass(frozen=True)
class ReportRows:
    """How many runs matched, the newest of each config (ROW_HEAD, run fields, columns), the
    shared fields of each configuration (seedless key -> field -> value), the flattened
    configs of the runs read from their folders (changed since indexed) by folder, one run
    folder per configuration, and
    `recheck`: None if the folders are as the index described them, else the rows again
    around the changes (the freshness check may still be running when the rows come)."""

    total: int
    rows: list[tuple[Any, ...]]
    fields: dict[str, dict[str, Any]]
    configs: dict[str, dict[str, Any]]
    first: dict[str, str]  # seedless key -> the folder of one run of that configuration
    recheck: Callable[[], ReportRows | None] = field(default=_unchanged)


class ReportReader(IndexReader):
    """IndexReader with the queries of `report`."""

    def _configure(self, conn: sqlite3.Connection) -> None:
        # Pages read through a memory map: a row longer than a page continues in overflow
        # pages, and a read() per page cost a report of 100,000 runs 0.35 s. (The mapped
        # pages count in the process's resident memory; they are the page cache's.)
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")

    def report_rows(
        self,
        query: RunQuery,
        run_fields: Sequence[str],
        shared: Sequence[str],
        columns: Sequence[str],
        *,
        with_tags: bool = False,
    ) -> ReportRows:
        """Of each config among the runs `query` matches that have a config and metrics (a
        config and seed trained again count once), the newest run by (updated, run_id).
        `run_fields`: config fields that may differ between the seeds of one configuration,
        given per run; `shared`: the others, given per configuration (read from one run of
        it); `columns`: metrics.

        With many rows and no writer about, a child process reads the shared fields while
        the rows are read here, then compares the folders with the index while the caller
        aggregates: call `recheck` at the end. Otherwise the check is done first and
        `recheck` finds nothing."""
        check_filters(query.status, None)
        unknown = [c for c in columns if c not in COLUMN_TYPES]
        if unknown:
            raise ResultsFolderError(f"no index column {unknown[0]!r}")
        args = (query, run_fields, columns, with_tags)
        conn = self._open_read_only()
        try:
            child = self._child(conn, query, shared)
            if child is None:
                found = self._rows(conn, self._changes(conn, query), *args)
                return self._with_fields(conn, found, shared)
            found = self._rows(conn, Changes([], set()), *args)
            if shared:  # the child reads most of the fields meanwhile, this one the rest
                found = self._with_fields(conn, found, shared, above=CHILD_KEYS_BELOW)
                for key, values in (child.take() or {}).items():
                    found.fields[key] = dict(zip(shared, values, strict=True))
            # None asked, or the child failed or read other configurations (the index
            # changed between the two reads): all read here.
            if found.fields.keys() != found.first.keys():
                found = self._with_fields(conn, found, shared)
        finally:
            if conn is not None:
                conn.close()

        def recheck() -> ReportRows | None:
            conn = self._open_read_only()
            try:
                # This process takes the batches of the check the child has not come to.
                mine = None if conn is None else find_changes(
                    self.root, query.experiment, known_loader(conn, full=True),
                    child.share.back(),
                )  # fmt: skip
                theirs = child.take()
                child.close()
                if mine is None or theirs is None:  # the child failed: all checked here
                    changes = self._changes(conn, query)
                else:
                    changes = merge(mine, theirs)
                if not changes.stale and not changes.excluded:
                    return None
                return self._with_fields(conn, self._rows(conn, changes, *args), shared)
            finally:
                if conn is not None:
                    conn.close()

        return replace(found, recheck=recheck)

    def _child(
        self, conn: sqlite3.Connection | None, query: RunQuery, shared: Sequence[str]
    ) -> _Child | None:
        """A child process reading the `shared` fields of most configurations `query`
        matches (CHILD_KEYS_BELOW; while this one reads the rows), then taking its part of
        the freshness check (while this one aggregates; this one takes the rest); None
        where it is not worth it (few rows), not safe (a writer about: the child might see
        other rows) or not possible."""
        uri = self._read_only_uri()
        if conn is None or not uri.endswith("immutable=1"):
            return None
        (rows,) = conn.execute("SELECT max(rowid) FROM runs").fetchone()
        if (rows or 0) < PARALLEL_MIN or not can_fork():
            return None
        where, args = self._where(query, Changes([], set()))
        where = f"{where} AND {_REPORTED} AND seedless_key < '{CHILD_KEYS_BELOW}'"
        fields = (uri, where, args, [*shared]) if shared else None
        return _Child(os.fspath(self.root), uri, query.experiment, fields)

    def _with_fields(
        self,
        conn: sqlite3.Connection | None,
        found: ReportRows,
        shared: Sequence[str],
        above: str = "",
    ) -> ReportRows:
        """`found` with the shared fields of its configurations (those whose seedless key
        is not below `above`): from the config of a run read from its folder, else from the
        index (one run per configuration)."""
        first = {key: folder for key, folder in found.first.items() if key >= above}
        indexed = [f for f in first.values() if f not in found.configs]
        stored = _stored(conn, indexed, shared) if shared and conn is not None else {}
        fields = {}
        for key, folder in first.items():
            if folder in found.configs:
                config = found.configs[folder]
                fields[key] = {f: config.get(f) for f in shared}
            else:
                fields[key] = dict(
                    zip(shared, stored.get(folder, [None] * len(shared)), strict=True)
                )
        return replace(found, fields=fields)

    def _rows(
        self,
        conn: sqlite3.Connection | None,
        changes: Changes,
        query: RunQuery,
        run_fields: Sequence[str],
        columns: Sequence[str],
        with_tags: bool,
    ) -> ReportRows:
        newest: dict[str, tuple[float, str, tuple[Any, ...]]] = {}
        total, configs = 0, {}
        for run in self._read_changed(changes, query):
            if run.config_key is None or run.row.stop_reason is None:
                continue
            total += 1
            config, row = run.config or {}, run.row
            tags = json.dumps(run.tags) if with_tags and run.tags is not None else None
            values = (row.run_id, row.folder, row.updated, run.config_key, run.seedless_key,
                      config.get("seed"), tags, *(config.get(f) for f in run_fields),
                      *(run.metrics.get(c) for c in columns))  # fmt: skip
            keep_newest(newest, run.config_key, row.updated, row.run_id, values)
            configs[row.folder] = config
        if conn is not None:
            where, args = self._where(query, changes)
            where += f" AND {_REPORTED}"
            selected = [*ROW_HEAD[:-1], "tags" if with_tags else "NULL", *columns]
            if run_fields:
                selected.insert(len(ROW_HEAD), _extract_all(run_fields))
            sql = f"SELECT {', '.join(selected)} FROM runs WHERE {where}"
            found = conn.execute(sql, args).fetchall()
            total += len(found)
            if run_fields:
                head, width = len(ROW_HEAD), len(run_fields)
                found = [(*v[:head], *_decode_all(v[head], width), *v[head + 1 :])
                         for v in found]  # fmt: skip
            if not newest and len({values[3] for values in found}) == len(found):
                return _report_rows(total, found, configs)  # no config trained twice
            for values in found:
                keep_newest(newest, values[3], values[2], values[0], values)
        return _report_rows(total, [item for _, _, item in newest.values()], configs)

    def stored(self, folders: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The whole flattened config of each run folder in `folders` the index has one
        for. One query, however many folders."""
        conn = self._open_read_only()
        if conn is None or not folders:
            return {}
        try:
            return _stored(conn, folders, None)
        finally:
            conn.close()


# The configurations whose shared fields the child reads: seedless keys (hex) below this,
# three quarters; this process reads the rest while the child is still busy with its part
# (the child's part of the freshness check grows or shrinks to what it has time for).
CHILD_KEYS_BELOW = "c"
MMAP_BYTES = 1 << 30  # what a report maps of the index at most
_REPORTED = "seedless_key IS NOT NULL AND stop_reason IS NOT NULL"  # a config, and metrics


class _Child(Forked):
    """The child process of a report: it reads the configurations' fields (`fields`: the
    arguments of _shared_fields, None if none are asked), then takes its part of the
    freshness check (`share`, from the front)."""

    def __init__(
        self, root: str, uri: str, experiment: str | None, fields: tuple[Any, ...] | None
    ) -> None:
        self.share = Share(root, experiment)
        check = (changes_by_uri, (root, uri, experiment, self.share))
        super().__init__([(_shared_fields, fields), check] if fields else [check], "fsmrun-report")


def _shared_fields(
    uri: str, where: str, args: list[Any], shared: list[str]
) -> dict[str, tuple[Any, ...]]:
    """In the child: the `shared` fields of one run of each configuration matching `where`
    (all its runs have the same)."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        one = f"SELECT min(rowid) FROM runs WHERE {where} GROUP BY seedless_key"
        sql = f"SELECT seedless_key, {_extract_all(shared)} FROM runs WHERE rowid IN ({one})"
        return {key: _decode_all(text, len(shared)) for key, text in conn.execute(sql, args)}
    finally:
        conn.close()


def _stored(
    conn: sqlite3.Connection, folders: Sequence[str], fields: Sequence[str] | None
) -> dict[str, Any]:
    """Of each folder with a config in the index: the `fields` (a tuple, as JSON decodes
    them), or the whole flattened config when `fields` is None."""
    selected = "config" if fields is None else _extract_all(fields)
    sql = (
        f"SELECT folder, {selected} FROM runs WHERE config IS NOT NULL "
        "AND folder IN (SELECT value FROM json_each(?))"
    )
    found = conn.execute(sql, [json.dumps(list(folders))]).fetchall()
    if fields is None:
        return {folder: json.loads(text) for folder, text in found}
    return {folder: _decode_all(text, len(fields)) for folder, text in found}


def _report_rows(
    total: int, rows: list[tuple[Any, ...]], configs: dict[str, dict[str, Any]]
) -> ReportRows:
    """ReportRows of `rows`, with one run folder per configuration (its shared fields are
    read from that run); the fields come later (ReportReader._with_fields)."""
    first: dict[str, str] = {}
    for values in rows:
        first.setdefault(values[4], values[1])
    return ReportRows(total, rows, {}, configs, first)


def _decode_all(text: str, width: int) -> tuple[Any, ...]:
    """The `width` values of an `_extract_all` array (its first path is asked twice)."""
    return tuple(json.loads(text)[1 : 1 + width])


def _extract_all(fields: Sequence[str]) -> str:
    """One json_extract of every field's path: SQLite parses each config once and returns a
    JSON array (booleans stay booleans); with a single path it would return the bare value,
    so the first path is asked twice. The keys are checked config keys (check_key)."""
    paths = [json_path(f) for f in fields]
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in [paths[0], *paths])
    return f"json_extract(config, {quoted})"
