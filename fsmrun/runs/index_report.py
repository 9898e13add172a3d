"""What `report` reads of the run index: the newest run of each config with the values a
report aggregates (narrow columns, one query), and the config fields of one run per
configuration. At 100,000 runs the freshness check (a stat of every folder) costs as much as
the rest of the report, so with a second core it runs in a child process meanwhile and the
caller rechecks at the end (`ReportRows.recheck`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsmrun.runs.index_columns import COLUMN_TYPES
from fsmrun.runs.index_known import changes_in_child, keep_newest
from fsmrun.runs.index_query import RunQuery, json_path
from fsmrun.runs.index_read import IndexReader, check_filters
from fsmrun.runs.index_scan import PARALLEL_MIN, Changes
from fsmrun.runs.layout import ResultsFolderError

# The leading values of each row `ReportReader.report_rows` gives; then the run fields, then
# the columns.
ROW_HEAD = ("run_id", "folder", "updated", "config_key", "seedless_key", "seed", "tags")


def _unchanged() -> ReportRows | None:
    return None


@dataclass(frozen=True)
class ReportRows:
    """How many runs matched, the newest of each config (ROW_HEAD, run fields, columns), the
    flattened configs of those read from their folders (changed since indexed) by folder,
    and `recheck`: None if the folders are as the index described them, else the rows again
    around the changes (the freshness check may still be running when the rows come)."""

    total: int
    rows: list[tuple[Any, ...]]
    configs: dict[str, dict[str, Any]]
    recheck: Callable[[], ReportRows | None] = field(default=_unchanged)


class ReportReader(IndexReader):
    """IndexReader with the queries of `report`."""

    def report_rows(
        self,
        query: RunQuery,
        run_fields: Sequence[str],
        columns: Sequence[str],
        *,
        with_tags: bool = False,
    ) -> ReportRows:
        """Of each config among the runs `query` matches that have a config and metrics (a
        config and seed trained again count once), the newest run by (updated, run_id).
        `run_fields`: config fields that may differ between the seeds of one configuration
        (the rest are asked of one run per configuration: `stored`); `columns`: metrics.

        With many rows and no writer about, the folders are compared with the index in a
        child process while the rows are read and aggregated here: call `recheck` at the
        end. Otherwise the check is done first and `recheck` finds nothing."""
        check_filters(query.status, None)
        unknown = [c for c in columns if c not in COLUMN_TYPES]
        if unknown:
            raise ResultsFolderError(f"no index column {unknown[0]!r}")
        args = (query, run_fields, columns, with_tags)
        conn = self._open_read_only()
        try:
            later = self._check_in_child(conn, query)
            if later is None:
                return self._rows(conn, self._changes(conn, query), *args)
            found = self._rows(conn, Changes([], set()), *args)
        finally:
            if conn is not None:
                conn.close()

        def recheck() -> ReportRows | None:
            changes = later()
            if changes is not None and not changes.stale and not changes.excluded:
                return None
            conn = self._open_read_only()
            try:
                if changes is None:  # the child failed: checked here
                    changes = self._changes(conn, query)
                    if not changes.stale and not changes.excluded:
                        return None
                return self._rows(conn, changes, *args)
            finally:
                if conn is not None:
                    conn.close()

        return ReportRows(found.total, found.rows, found.configs, recheck)

    def _check_in_child(
        self, conn: sqlite3.Connection | None, query: RunQuery
    ) -> Callable[[], Changes | None] | None:
        """The freshness check started in a child process, or None where it is not worth
        it (few rows) or not safe (a writer about: the child might see other rows)."""
        uri = self._read_only_uri()
        if conn is None or not uri.endswith("immutable=1"):
            return None
        (rows,) = conn.execute("SELECT max(rowid) FROM runs").fetchone()
        if (rows or 0) < PARALLEL_MIN:
            return None
        return changes_in_child(self.root, uri, query.experiment)

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
            where += " AND config_key IS NOT NULL AND stop_reason IS NOT NULL"
            selected = [*ROW_HEAD[:-1], "tags" if with_tags else "NULL", *columns]
            if run_fields:
                selected.insert(len(ROW_HEAD), _extract_all(run_fields))
            sql = f"SELECT {', '.join(selected)} FROM runs WHERE {where}"
            found = conn.execute(sql, args).fetchall()
            total += len(found)
            if run_fields:
                loads, head, width = json.loads, len(ROW_HEAD), len(run_fields)
                found = [(*v[:head], *loads(v[head])[1 : 1 + width], *v[head + 1 :])
                         for v in found]  # fmt: skip
            if not newest and len({values[3] for values in found}) == len(found):
                return ReportRows(total, found, configs)  # no config trained twice
            for values in found:
                keep_newest(newest, values[3], values[2], values[0], values)
        return ReportRows(total, [item for _, _, item in newest.values()], configs)

    def stored(self, folders: Sequence[str], fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Of each run folder in `folders` the index has a config for: the values of the
        config `fields` (a tuple, as JSON decodes them), or its whole flattened config when
        `fields` is None. One query, however many folders."""
        if not folders:
            return {}
        conn = self._open_read_only()
        if conn is None:
            return {}
        selected = "config" if fields is None else _extract_all(fields or ["seed"])
        sql = (
            f"SELECT folder, {selected} FROM runs WHERE config IS NOT NULL "
            "AND folder IN (SELECT value FROM json_each(?))"
        )
        try:
            found = conn.execute(sql, [json.dumps(list(folders))]).fetchall()
        finally:
            conn.close()
        loads = json.loads
        if fields is None:
            return {folder: loads(text) for folder, text in found}
        return {folder: tuple(loads(text)[1 : 1 + len(fields)]) for folder, text in found}


def _extract_all(fields: Sequence[str]) -> str:
    """One json_extract of every field's path: SQLite parses each config once and returns a
    JSON array (booleans stay booleans); with a single path it would return the bare value,
    so the first path is asked twice. The keys are checked config keys (check_key)."""
    paths = [json_path(f) for f in fields]
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in [paths[0], *paths])
    return f"json_extract(config, {quoted})"
