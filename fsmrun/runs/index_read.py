"""Reading the index `<root>/registry.sqlite` without ever writing it: the runs a RunQuery
asks for, streamed in order with their count, or the values a report needs. Only folders the
index does not describe (index_scan) are read; the rest comes from its rows."""

from __future__ import annotations

import dataclasses
import difflib
import heapq
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from fsmrun.runs.index_columns import (
    COLUMN_TYPES,
    COLUMNS,
    RUN_COLUMNS,
    IndexedRun,
    read_indexed_run,
)
from fsmrun.runs.index_folders import read_folders, visible_names
from fsmrun.runs.index_known import Forked, can_fork, known_loader, new_runs_by_uri, rows_under
from fsmrun.runs.index_query import RunQuery, json_path
from fsmrun.runs.index_scan import (
    SHARED_MIN,
    Changes,
    Known,
    Share,
    find_changes,
    find_new_runs,
    merge,
)
from fsmrun.runs.layout import ResultsFolderError, is_plain_name
from fsmrun.runs.lock import lock_held
from fsmrun.runs.run_folder import STATUSES, RunFolderError, status_now
from fsmrun.schemas.run_row import RunRow

log = logging.getLogger(__name__)

INDEX_FILE = "registry.sqlite"
BUSY_TIMEOUT_S = 30.0
INDEX_SCHEMA_VERSION = 4
SORT_KEYS: tuple[str, ...] = tuple(f for f in RunRow.model_fields if f != "tags")


def _now_row(root: Path, row: RunRow) -> RunRow:
    writer = lock_held(root / row.folder) if row.status == "running" else None
    status = status_now(row.status, row.pid, row.hostname, row.heartbeat, writer=writer)
    return row if status == row.status else row.model_copy(update={"status": status})


def _check_choice(value: str | None, valid: tuple[str, ...], what: str) -> None:
    if value is not None and value not in valid:
        close = difflib.get_close_matches(value, valid, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ResultsFolderError(f"unknown {what} {value!r}{hint}; valid: {', '.join(valid)}")


def check_filters(status: str | None, sort: str | None) -> None:
    """ResultsFolderError naming the valid choices for an unknown status or sort key."""
    _check_choice(status, STATUSES, "status")
    _check_choice(sort, SORT_KEYS, "sort key")


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """DatabaseError that a rebuild can fix, as opposed to locks and unwritable folders."""
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed", ...
    message = str(exc).lower()
    return not any(w in message for w in ("locked", "busy", "readonly", "unable to open", "disk"))


def schema_ok(conn: sqlite3.Connection) -> bool:
    """The index has this fsmrun version's tables."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != INDEX_SCHEMA_VERSION:
        return False
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    dirs = [r[1] for r in conn.execute("PRAGMA table_info(dirs)")]
    return tuple(columns) == COLUMNS and dirs == ["path", "mtime_ns", "children"]


class IndexReader:
    """Read-only queries of the index of the results folder `root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        self._skipped: set[Path] = set()

    def rows(
        self,
        experiment: str | None = None,
        status: str | None = None,
        sort: str | None = None,
        descending: bool = False,
    ) -> list[RunRow]:
        """Every run under the root with its status now, filtered and sorted (default: by
        created); see `select`."""
        query = RunQuery(experiment=experiment, status=status, sort=sort, descending=descending)
        return [listed.row for listed in self.select(query).listed]

    def select(self, query: RunQuery, *, with_config: bool = False) -> Selection:
        """The runs `query` asks for, streamed in its order, and how many match in all.
        Only reads: never creates, repairs or writes the index or a folder.

        The folders found by a directory scan are the runs; the index supplies their rows,
        so only folders it lacks or whose mtime moved (copied in, edited, or an index
        missing, damaged or unreadable) and rows recorded as running are read from the
        folders; for a `newest_only` query only the run folders of the rows returned are
        stat'ed (see `index_scan.find_new_runs`). `with_config` adds each run's flattened
        config (`index_columns`).
        """
        check_filters(query.status, query.sort)
        if query.experiment is not None and not is_plain_name(query.experiment):
            return Selection(0, iter(()))  # "../x" or "a/b" names no experiment folder
        conn = self._open_read_only()
        key = query.row_key()
        fresh, changes = self._fresh(conn, query)
        listed = sorted(
            (Listed(run.row, run.config) for run in fresh), key=lambda item: key(item.row)
        )
        if conn is None:
            return Selection(len(listed), iter(listed[: query.limit]))
        where, args = self._where(query, changes)
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", args).fetchone()[0]
        columns = ", ".join(RUN_COLUMNS + ("tags", "config" if with_config else "NULL",
                                           "folder_mtime_ns"))  # fmt: skip
        sql = f"SELECT {columns} FROM runs WHERE {where} ORDER BY {query.order_sql()}"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        # The light check did not stat run folders: the few rows shown are checked here.
        indexed = self._stream(conn, conn.execute(sql, args), query.newest_only)
        merged = heapq.merge(indexed, listed, key=lambda item: key(item.row))
        limited = (item for i, item in enumerate(merged) if query.limit is None or i < query.limit)
        return Selection(total + len(listed), _closing(conn, limited))

    def select_json(self, query: RunQuery) -> tuple[int, Iterator[str]]:
        """`select`'s runs as JSON lines (RunRow.model_dump_json) and their count: index rows
        give the line they stored, so 100,000 runs stream without building a RunRow each."""
        check_filters(query.status, query.sort)
        if query.experiment is not None and not is_plain_name(query.experiment):
            return 0, iter(())
        conn = self._open_read_only()
        fresh, changes = self._fresh(conn, query)
        sort, pair = query.sort_key, query.pair_key()
        listed = [((getattr(r.row, sort), r.row.run_id), r.row.model_dump_json()) for r in fresh]
        listed.sort(key=lambda item: pair(item[0]))
        if conn is None:
            return len(listed), iter([line for _, line in listed[: query.limit]])
        where, args = self._where(query, changes)
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", args).fetchone()[0]
        sql = (
            f"SELECT {sort}, run_id, row_json, folder FROM runs WHERE {where} "
            f"ORDER BY {query.order_sql()}"
        )
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"

        def indexed() -> Iterator[tuple[tuple[Any, str], str]]:
            for value, run_id, line, folder in conn.execute(sql, args):
                if line is None:  # not stored (a damaged row): its folder is read instead
                    try:
                        line = read_indexed_run(self.root, self.root / folder).row.model_dump_json()
                    except (ResultsFolderError, RunFolderError, OSError) as exc:
                        self._skip(self.root / folder, str(exc))
                        continue
                yield (value, run_id), line

        merged = heapq.merge(indexed(), listed, key=lambda item: pair(item[0]))
        lines = (line for i, (_, line) in enumerate(merged)
                 if query.limit is None or i < query.limit)  # fmt: skip
        return total + len(listed), _closing(conn, lines)

    def values(
        self, query: RunQuery, fields: Sequence[str], columns: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        """(run_id, folder, config_hash, version, *fields, *columns) of each run `query`
        asks for, in no particular order: config `fields` (dotted keys, as stored: JSON
        booleans come back as 0/1 from the index) and index `columns` (metrics)."""
        check_filters(query.status, None)
        conn = self._open_read_only()
        fresh, changes = self._fresh(conn, query)
        for run in fresh:
            config, metrics = run.config or {}, run.metrics
            yield (
                run.row.run_id, run.row.folder, run.row.config_hash, run.row.version,
                *(config.get(f) for f in fields), *(metrics.get(c) for c in columns),
            )  # fmt: skip
        if conn is None:
            return
        unknown = [c for c in columns if c not in COLUMN_TYPES]
        if unknown:
            raise ResultsFolderError(f"no index column {unknown[0]!r}")
        where, args = self._where(query, changes)
        extract = ["json_extract(config, ?)"] * len(fields)
        selected = ", ".join(["run_id", "folder", "config_hash", "version", *extract, *columns])
        sql = f"SELECT {selected} FROM runs WHERE {where}"
        yield from _closing(conn, conn.execute(sql, [*map(json_path, fields), *args]))

    def _fresh(
        self, conn: sqlite3.Connection | None, query: RunQuery
    ) -> tuple[list[IndexedRun], Changes]:
        """Runs read from changed folders that match `query`, and the changes found (the
        folders whose index rows are not to be used)."""
        changes = self._changes(conn, query)
        return self._read_changed(changes, query), changes

    def _changes(self, conn: sqlite3.Connection | None, query: RunQuery) -> Changes:
        """The folders the index does not describe as they are now (index_scan)."""
        if conn is None:
            return find_changes(self.root, query.experiment, lambda names, lo, hi: Known())
        if not query.newest_only:
            return find_changes(self.root, query.experiment, known_loader(conn, full=True))
        changes = self._new_runs(conn, query)
        if query.experiment is None:  # experiment folders deleted since: not listed
            indexed = {e for (e,) in conn.execute("SELECT DISTINCT experiment FROM runs")}
            for gone in indexed.difference(changes.experiments or ()):
                changes.excluded.update(rows_under(conn)(gone))
        return changes

    def _new_runs(self, conn: sqlite3.Connection, query: RunQuery) -> Changes:
        """`find_new_runs`; with many experiment folders, a second core and no writer about,
        shared with a child process (about 0.3 s of `ls` at 100,000 runs): it takes batches
        of experiment folders from the front, this one from the back."""
        load, under = known_loader(conn, full=False), rows_under(conn)
        uri = self._read_only_uri()
        if (
            query.experiment is not None
            or not uri.endswith("immutable=1")
            or not can_fork()
            or len(visible_names(self.root)) < SHARED_MIN
        ):
            return find_new_runs(self.root, query.experiment, load, under)
        share = Share(self.root, None)
        child = Forked([(new_runs_by_uri, (os.fspath(self.root), uri, None, share))], "fsmrun-ls")
        mine = find_new_runs(self.root, None, load, under, share.back())
        theirs = child.take()
        child.close()
        if theirs is None:  # the child failed: checked here
            return find_new_runs(self.root, None, load, under)
        return replace(merge(mine, theirs), experiments=mine.experiments)

    def _read_changed(self, changes: Changes, query: RunQuery) -> list[IndexedRun]:
        """The runs in the changed folders that match `query` (with their status now)."""
        fresh = []
        for rel, result in read_folders(self.root, changes.stale):
            if isinstance(result, str):
                self._skip(self.root / rel, result)
                continue
            row = _now_row(self.root, result.row)
            if query.matches(result, row.status):
                fresh.append(dataclasses.replace(result, row=row))
        return fresh

    @staticmethod
    def _where(query: RunQuery, changes: Changes) -> tuple[str, list[Any]]:
        where, args = query.sql()
        where += " AND status != 'running'"  # those were read from their folders
        if changes.excluded:
            where += " AND folder NOT IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(sorted(changes.excluded)))
        return where, args

    def _stream(
        self, conn: sqlite3.Connection, cursor: sqlite3.Cursor, check_mtime: bool
    ) -> Iterator[Listed]:
        """Listed runs of rows (RUN_COLUMNS, tags, config or NULL, folder_mtime_ns); a row
        that does not validate, or (`check_mtime`) whose folder's mtime moved, is read from
        its folder instead."""
        width = len(RUN_COLUMNS)
        for values in cursor:
            folder = str(values[4])
            try:
                if check_mtime and os.stat(self.root / folder).st_mtime_ns != values[-1]:
                    raise ValueError("changed since it was indexed")
                fields = dict(zip(RUN_COLUMNS, values[:width], strict=True))
                tags = json.loads(values[width]) if values[width] else {}
                row = RunRow.model_validate({**fields, "tags": tags})
            except OSError:
                continue  # deleted since the listing began
            except ValueError:  # a damaged row (ValidationError) or a changed folder
                try:
                    run = read_indexed_run(self.root, self.root / folder)
                except (ResultsFolderError, RunFolderError, OSError) as exc:
                    self._skip(self.root / folder, str(exc))
                    continue
                yield Listed(_now_row(self.root, run.row), run.config)
                continue
            raw = values[width + 1]
            yield Listed(row, json.loads(raw) if raw else None)

    def _skip(self, folder: Path, reason: str) -> None:
        if folder not in self._skipped:  # one warning per folder, also after reindex()
            self._skipped.add(folder)
            log.warning("skipping %s: %s", folder, reason)

    def _read_only_uri(self) -> str:
        """A URI opening the index without creating or changing any file.

        With no -wal/-shm beside it no connection is open and the file is the whole database:
        it is read as immutable (a plain read-only open would create both files). Otherwise a
        writer is about and its -wal holds recent rows: the open is read-only, through the
        files that exist. A writer checkpointing during an immutable read can at worst fail it
        (the folders are read instead) or give a stale row; folders are always rescanned.
        """
        uri = self.path.resolve().as_uri()
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        if not wal.exists() and not shm.exists():
            return f"{uri}?immutable=1"
        return f"{uri}?mode=ro"

    def _configure(self, conn: sqlite3.Connection) -> None:
        """Settings of a new read-only connection, before its read transaction begins."""

    def _open_read_only(self) -> sqlite3.Connection | None:
        """A read-only connection in a read transaction (one snapshot for every query);
        None when there is no index or it cannot be read (the folders are read instead)."""
        if not self.path.is_file():
            return None
        try:
            conn = sqlite3.connect(self._read_only_uri(), uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                self._configure(conn)
                if not schema_ok(conn):
                    raise sqlite3.DatabaseError("not an index of this fsmrun version")
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM dirs").fetchone()  # the snapshot starts
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                log.warning(
                    "run index %s is damaged (%s); reading the run folders "
                    "(`fsmrun ls --reindex` rebuilds it)",
                    self.path,
                    exc,
                )
            return None
        return conn


@dataclass(frozen=True)
class Listed:
    """One listed run: its row (status now) and, when asked for, its flattened config."""

    row: RunRow
    config: dict[str, Any] | None


@dataclass(frozen=True)
class Selection:
    """The runs a query matched: how many in all, and the (possibly limited) stream."""

    total: int
    listed: Iterator[Listed]


_Item = TypeVar("_Item")


def _closing(conn: sqlite3.Connection, items: Iterator[_Item]) -> Iterator[_Item]:
    """`items`, closing `conn` once they are exhausted (or the stream is dropped)."""
    try:
        yield from items
    finally:
        conn.close()
