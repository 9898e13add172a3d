"""The SQLite index `<root>/registry.sqlite`: one row per run, a cache of the run folders
(the source of truth); writers rebuild it when missing or damaged, listing only reads.

Besides the RunRow fields a row holds the flattened config, every per-split metric and the
tags (see `index_columns`), so listing and reporting 100,000 runs reads no run folder but the
few whose directory mtime moved (see `index_scan`)."""

from __future__ import annotations

import difflib
import heapq
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from fsmrun.base.faults import fault_point
from fsmrun.runs.index_columns import EXTRA_COLUMN_TYPES, IndexedRun, read_indexed_run
from fsmrun.runs.index_query import RunQuery, json_path
from fsmrun.runs.index_scan import Known, find_changes, iter_folder_values, read_folders
from fsmrun.runs.layout import (
    FIX_HINT,
    RegistryError,
    is_plain_name,
    list_versions,
    make_dirs,
)
from fsmrun.runs.lock import lock_held
from fsmrun.runs.run_folder import STATUSES, RunFolderError, status_now
from fsmrun.schemas.run_row import RunRow

log = logging.getLogger(__name__)

INDEX_FILE = "registry.sqlite"
BUSY_TIMEOUT_S = 30.0
INDEX_SCHEMA_VERSION = 2
# A folder mtime younger than this may still change within the same clock tick: not trusted.
SETTLED_S = 2.0
SORT_KEYS: tuple[str, ...] = tuple(RunRow.model_fields)

_COLUMN_TYPES = {
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
_COLUMNS = tuple(_COLUMN_TYPES)
_ALL_TYPES = {**_COLUMN_TYPES, **EXTRA_COLUMN_TYPES}
_ALL_COLUMNS = tuple(_ALL_TYPES)
_CREATE = "CREATE TABLE runs ({})".format(", ".join(f"{c} {t}" for c, t in _ALL_TYPES.items()))
_CREATE_INDEXES = (
    "CREATE INDEX runs_created ON runs (created)",
    "CREATE INDEX runs_config_hash ON runs (config_hash)",
)
_CREATE_MORE = (
    # A folder whose listing is known as of its mtime: `children` joined by '/' (index_scan).
    "CREATE TABLE dirs (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, children TEXT NOT NULL)",
    *_CREATE_INDEXES,
)
_CREATE_NEW = ("DROP TABLE IF EXISTS runs_new", _CREATE.replace("TABLE runs", "TABLE runs_new"))
_UPSERT = "INSERT OR REPLACE INTO runs ({}) VALUES ({})".format(
    ", ".join(_ALL_COLUMNS), ", ".join("?" * len(_ALL_COLUMNS))
)
_SET_DIR = "INSERT OR REPLACE INTO dirs (path, mtime_ns, children) VALUES (?, ?, ?)"
_INSERT_NEW = _UPSERT.replace("INTO runs", "INTO runs_new")
_BATCH = 2000
assert tuple(RunRow.model_fields) == _COLUMNS, "index columns follow RunRow's fields"
_T = TypeVar("_T")


def _now_row(root: Path, row: RunRow) -> RunRow:
    writer = lock_held(root / row.folder) if row.status == "running" else None
    status = status_now(row.status, row.pid, row.hostname, row.heartbeat, writer=writer)
    return row if status == row.status else row.model_copy(update={"status": status})


def _check_choice(value: str | None, valid: tuple[str, ...], what: str) -> None:
    if value is not None and value not in valid:
        close = difflib.get_close_matches(value, valid, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise RegistryError(f"unknown {what} {value!r}{hint}; valid: {', '.join(valid)}")


def check_filters(status: str | None, sort: str | None) -> None:
    """RegistryError naming the valid choices for an unknown status or sort key."""
    _check_choice(status, STATUSES, "status")
    _check_choice(sort, SORT_KEYS, "sort key")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """DatabaseError that a rebuild can fix, as opposed to locks and unwritable folders."""
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed", ...
    message = str(exc).lower()
    return not any(w in message for w in ("locked", "busy", "readonly", "unable to open", "disk"))


class RunIndex:
    """`<root>/registry.sqlite`: one row per run, rebuilt from the folders when needed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        self._ready = False
        self._skipped: set[Path] = set()

    # -- connection and self-repair

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def _schema_ok(self, conn: sqlite3.Connection) -> bool:
        if conn.execute("PRAGMA user_version").fetchone()[0] != INDEX_SCHEMA_VERSION:
            return False
        columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        dirs = [r[1] for r in conn.execute("PRAGMA table_info(dirs)")]
        return tuple(columns) == _ALL_COLUMNS and dirs == ["path", "mtime_ns", "children"]

    def _delete_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _create_if_needed(self) -> bool:
        """Create the table unless a healthy one exists; True if it was (re)created."""
        conn = self._connect()
        try:
            if self._schema_ok(conn):
                return False
            conn.execute("BEGIN IMMEDIATE")
            if self._schema_ok(conn):  # another process created it while we waited
                conn.execute("ROLLBACK")
                return False
            conn.execute("DROP TABLE IF EXISTS runs")
            conn.execute("DROP TABLE IF EXISTS dirs")
            conn.execute(_CREATE)
            for statement in _CREATE_MORE:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {INDEX_SCHEMA_VERSION}")
            conn.execute("COMMIT")
            return True
        finally:
            conn.close()

    def _ensure(self) -> None:
        if self._ready:
            return
        make_dirs(self.root)
        if not self.path.exists():
            self._delete_files()  # a stale -wal must not be replayed into a new database
        try:
            created = self._create_if_needed()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise RegistryError(
                    f"cannot open the index {self.path} ({exc}); {FIX_HINT}"
                ) from exc
            log.warning("registry index %s is damaged (%s); rebuilding it", self.path, exc)
            self._delete_files()
            created = self._create_if_needed()
        self._ready = True
        if created:
            self.reindex()

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in one transaction; a damaged index is rebuilt once and `work` retried."""
        for attempt in range(2):
            try:
                self._ensure()
                conn = self._connect()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    result = work(conn)
                    fault_point("index_txn")
                    conn.execute("COMMIT")
                    return result
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                if attempt or not _is_corruption(exc):
                    raise RegistryError(f"index {self.path}: {exc}; {FIX_HINT}") from exc
                log.warning("registry index %s is damaged (%s); rebuilding it", self.path, exc)
                self._delete_files()
                self._ready = False
        raise AssertionError("unreachable")

    # -- writing

    def upsert_folder(self, folder: str | os.PathLike[str]) -> RunRow:
        """Read the files of `folder` and insert or replace its row."""
        run = read_indexed_run(self.root, folder)
        hash_dir = Path(folder).parent
        rel_hash = run.row.folder.rsplit("/", 1)[0]
        exp = rel_hash.split("/", 1)[0]
        hash_listing = _settled_listing(hash_dir, versions=True)
        exp_listing = _settled_listing(hash_dir.parent, versions=False)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_UPSERT, run.values())
            conn.execute("DELETE FROM dirs WHERE path IN (?, ?)", (rel_hash, exp))
            if hash_listing is None:
                return
            mtime, versions = hash_listing
            listed = [f"{rel_hash}/{v}" for v in versions]
            if _count_in(conn, "runs", "folder", listed) < len(listed):
                return  # a version not indexed (copied in, unreadable): keep listing it
            conn.execute(_SET_DIR, (rel_hash, mtime, "/".join(versions)))
            if exp_listing is None:
                return
            mtime, names = exp_listing
            if _count_in(conn, "dirs", "path", [f"{exp}/{n}" for n in names]) == len(names):
                conn.execute(_SET_DIR, (exp, mtime, "/".join(names)))

        self._run(work)
        return run.row

    def reindex(self, workers: int | None = None) -> int:
        """Rebuild every row from the run folders alone (read by `workers` processes when
        there are many); the number of runs indexed."""
        folders: list[str] = []
        dirs: dict[str, tuple[int, str]] = {}
        unsettled: set[str] = set()
        for exp in _listdir(self.root):
            exp_listing = _settled_listing(self.root / exp, versions=False)
            for name in exp_listing[1] if exp_listing else _listdir(self.root / exp):
                rel_hash = f"{exp}/{name}"
                listing = _settled_listing(self.root / rel_hash, versions=True)
                if listing is None:
                    unsettled.add(exp)
                    versions = [f"v{n}" for n in list_versions(self.root / rel_hash)]
                else:
                    dirs[rel_hash] = (listing[0], "/".join(listing[1]))
                    versions = listing[1]
                folders += [f"{rel_hash}/{v}" for v in versions]
            if exp_listing is not None:
                dirs[exp] = (exp_listing[0], "/".join(exp_listing[1]))
        # Rows go into a new table in batches (memory stays flat, writers wait at most one
        # batch), which then replaces the old one at once: readers never see half an index.
        self._run(lambda conn: [conn.execute(statement) for statement in _CREATE_NEW])
        count, batch = 0, []
        for rel, values in iter_folder_values(self.root, folders, workers):
            if isinstance(values, str):
                self._skip(self.root / rel, values)
                rel_hash = rel.rsplit("/", 1)[0]
                dirs.pop(rel_hash, None)  # list it again: a folder in it is unread
                unsettled.add(rel_hash.split("/", 1)[0])
                continue
            batch.append(values)
            if len(batch) >= _BATCH:
                self._run(lambda conn, rows=batch: conn.executemany(_INSERT_NEW, rows))
                count, batch = count + len(batch), []
        self._run(lambda conn, rows=batch: conn.executemany(_INSERT_NEW, rows))
        count += len(batch)
        for exp in unsettled:
            dirs.pop(exp, None)  # a hash folder in it is not known: list it again

        def swap(conn: sqlite3.Connection) -> None:
            conn.execute("DROP TABLE runs")
            conn.execute("ALTER TABLE runs_new RENAME TO runs")
            for statement in _CREATE_INDEXES:
                conn.execute(statement)
            conn.execute("DELETE FROM dirs")
            conn.executemany(_SET_DIR, ((p, m, c) for p, (m, c) in dirs.items()))

        self._run(swap)
        return count

    # -- reading (never writes)

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
        folders. `with_config` adds each run's flattened config (`index_columns`).
        """
        check_filters(query.status, query.sort)
        if query.experiment is not None and not is_plain_name(query.experiment):
            return Selection(0, iter(()))  # "../x" or "a/b" names no experiment folder
        conn = self._open_read_only()
        key = query.row_key()
        fresh, excluded = self._fresh(conn, query)
        listed = sorted(
            (Listed(run.row, run.config) for run in fresh), key=lambda item: key(item.row)
        )
        if conn is None:
            return Selection(len(listed), iter(listed[: query.limit]))
        where, args = self._where(query, excluded)
        total = conn.execute(f"SELECT COUNT(*) FROM runs WHERE {where}", args).fetchone()[0]
        columns = ", ".join(_COLUMNS + (("config",) if with_config else ()))
        sql = f"SELECT {columns} FROM runs WHERE {where} ORDER BY {query.order_sql()}"
        if query.limit is not None:
            sql += f" LIMIT {int(query.limit)}"
        indexed = self._stream(conn, conn.execute(sql, args), with_config)
        merged = heapq.merge(indexed, listed, key=lambda item: key(item.row))
        limited = (item for i, item in enumerate(merged) if query.limit is None or i < query.limit)
        return Selection(total + len(listed), _closing(conn, limited))

    def values(
        self, query: RunQuery, fields: Sequence[str], columns: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        """(run_id, folder, config_hash, version, *fields, *columns) of each run `query`
        asks for, in no particular order: config `fields` (dotted keys, as stored: JSON
        booleans come back as 0/1 from the index) and index `columns` (metrics)."""
        check_filters(query.status, None)
        conn = self._open_read_only()
        fresh, excluded = self._fresh(conn, query)
        for run in fresh:
            config, metrics = run.config or {}, run.metrics
            yield (
                run.row.run_id, run.row.folder, run.row.config_hash, run.row.version,
                *(config.get(f) for f in fields), *(metrics.get(c) for c in columns),
            )  # fmt: skip
        if conn is None:
            return
        unknown = [c for c in columns if c not in _ALL_TYPES]
        if unknown:
            raise RegistryError(f"no index column {unknown[0]!r}")
        where, args = self._where(query, excluded)
        extract = ["json_extract(config, ?)"] * len(fields)
        selected = ", ".join(["run_id", "folder", "config_hash", "version", *extract, *columns])
        sql = f"SELECT {selected} FROM runs WHERE {where}"
        yield from _closing(conn, conn.execute(sql, [*map(json_path, fields), *args]))

    def _fresh(
        self, conn: sqlite3.Connection | None, query: RunQuery
    ) -> tuple[list[IndexedRun], set[str]]:
        """Runs read from changed folders that match `query`, and the folders whose index
        rows are not to be used."""
        known = Known()
        if conn is not None:
            where, args = "1", ()
            dirs_where, dirs_args = "1", ()
            if query.experiment is not None:
                where, args = "experiment = ?", (query.experiment,)
                dirs_where = "path = ? OR path LIKE ? ESCAPE '\\'"
                dirs_args = (query.experiment, _like_prefix(query.experiment) + "/%")
            known.runs = dict(
                conn.execute(f"SELECT folder, folder_mtime_ns FROM runs WHERE {where}", args)
            )
            running = f"SELECT folder FROM runs WHERE status = 'running' AND {where}"
            known.running = {f for (f,) in conn.execute(running, args)}
            dirs_sql = f"SELECT path, mtime_ns, children FROM dirs WHERE {dirs_where}"
            known.dirs = {p: (m, c) for p, m, c in conn.execute(dirs_sql, dirs_args)}
        changes = find_changes(self.root, known, query.experiment)
        fresh = []
        for rel, result in read_folders(self.root, changes.stale):
            if isinstance(result, str):
                self._skip(self.root / rel, result)
                continue
            row = _now_row(self.root, result.row)
            if query.matches(result, row.status):
                fresh.append(IndexedRun(row, result.mtime_ns, result.config, result.metrics,
                                        result.tags))  # fmt: skip
        return fresh, changes.excluded

    @staticmethod
    def _where(query: RunQuery, excluded: set[str]) -> tuple[str, list[Any]]:
        where, args = query.sql()
        where += " AND status != 'running'"  # those were read from their folders
        if excluded:
            where += " AND folder NOT IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(sorted(excluded)))
        return where, args

    def _stream(
        self, conn: sqlite3.Connection, cursor: sqlite3.Cursor, with_config: bool
    ) -> Iterator[Listed]:
        width = len(_COLUMNS)
        for values in cursor:
            try:
                row = RunRow.model_validate(dict(zip(_COLUMNS, values[:width], strict=True)))
            except ValidationError:  # a damaged row: its folder is read instead
                try:
                    run = read_indexed_run(self.root, self.root / str(values[4]))
                except (RegistryError, RunFolderError, OSError) as exc:
                    self._skip(self.root / str(values[4]), str(exc))
                    continue
                yield Listed(_now_row(self.root, run.row), run.config)
                continue
            config = json.loads(values[width]) if with_config and values[width] else None
            yield Listed(row, config)

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

    def _open_read_only(self) -> sqlite3.Connection | None:
        """A read-only connection in a read transaction (one snapshot for every query);
        None when there is no index or it cannot be read (the folders are read instead)."""
        if not self.path.is_file():
            return None
        try:
            conn = sqlite3.connect(self._read_only_uri(), uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                if not self._schema_ok(conn):
                    raise sqlite3.DatabaseError("not an index of this fsmrun version")
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM dirs").fetchone()  # the snapshot starts
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                log.warning(
                    "registry index %s is damaged (%s); reading the run folders "
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


def _settled_listing(folder: Path, *, versions: bool) -> tuple[int, list[str]] | None:
    """(mtime_ns, sorted names) of a folder's visible sub-folders (`versions`: its v<N>
    folders), the mtime taken before listing; None when it is too recent to be trusted (a
    change within the same clock tick would not move it) or cannot be read."""
    try:
        mtime = os.stat(folder).st_mtime_ns
        if time.time_ns() - mtime <= SETTLED_S * 1e9:
            return None
        names = [f"v{n}" for n in list_versions(folder)] if versions else _listdir(folder)
    except OSError:
        return None
    return mtime, names


def _count_in(conn: sqlite3.Connection, table: str, column: str, values: list[str]) -> int:
    sql = f"SELECT COUNT(*) FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))"
    return conn.execute(sql, (json.dumps(values),)).fetchone()[0]


def _listdir(folder: Path) -> list[str]:
    """Sorted visible entries that are folders ([] if `folder` is none)."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []
    return [n for n in names if (folder / n).is_dir()]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_Item = TypeVar("_Item")


def _closing(conn: sqlite3.Connection, items: Iterator[_Item]) -> Iterator[_Item]:
    """`items`, closing `conn` once they are exhausted (or the stream is dropped)."""
    try:
        yield from items
    finally:
        conn.close()
