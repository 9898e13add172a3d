"""The SQLite index `<root>/registry.sqlite`: one row per run, a cache of the run folders
(the source of truth); writers rebuild it when missing or damaged, listing only reads.

Besides the RunRow fields a row holds the flattened config, every per-split metric and the
tags (see `index_columns`), so listing and reporting 100,000 runs reads no run folder but the
few whose directory mtime moved (see `index_scan`)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fsmrun.base.faults import fault_point
from fsmrun.runs.index_columns import COLUMN_TYPES, COLUMNS, read_indexed_run
from fsmrun.runs.index_folders import iter_hash_folders, settled_listing, visible_names
from fsmrun.runs.index_read import (
    BUSY_TIMEOUT_S,
    INDEX_SCHEMA_VERSION,
    IndexReader,
    is_corruption,
    schema_ok,
)
from fsmrun.runs.layout import FIX_HINT, ResultsFolderError, make_dirs
from fsmrun.schemas.run_row import RunRow

log = logging.getLogger(__name__)


_CREATE = "CREATE TABLE runs ({})".format(", ".join(f"{c} {t}" for c, t in COLUMN_TYPES.items()))
_CREATE_INDEXES = (
    # The newest page of `ls` (ORDER BY created DESC, run_id DESC LIMIT n) walks this.
    "CREATE INDEX IF NOT EXISTS runs_created_id ON runs (created, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment)",
    "CREATE INDEX IF NOT EXISTS runs_config_hash ON runs (config_hash)",
    # Covers what every listing reads of every row (and its count), so those scans skip the
    # wide rows (config, metrics) and read a narrow index instead.
    "CREATE INDEX IF NOT EXISTS runs_folder ON runs (folder, folder_mtime_ns, status)",
    # One run of each configuration (a report's GROUP BY seedless_key) walks this instead of
    # sorting every row: 0.11 s -> 0.04 s at 100,000 runs.
    "CREATE INDEX IF NOT EXISTS runs_seedless ON runs (seedless_key, status, stop_reason)",
)
_CREATE_MORE = (
    # A folder whose listing is known as of its mtime: `children` joined by '/' (index_scan).
    "CREATE TABLE dirs (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, children TEXT NOT NULL)",
    *_CREATE_INDEXES,
)
_CREATE_NEW = ("DROP TABLE IF EXISTS runs_new", _CREATE.replace("TABLE runs", "TABLE runs_new"))
_UPSERT = "INSERT OR REPLACE INTO runs ({}) VALUES ({})".format(
    ", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))
)
_SET_DIR = "INSERT OR REPLACE INTO dirs (path, mtime_ns, children) VALUES (?, ?, ?)"
_INSERT_NEW = _UPSERT.replace("INTO runs", "INTO runs_new")
_BATCH = 2000
_T = TypeVar("_T")


class RunIndex(IndexReader):
    """`<root>/registry.sqlite`: one row per run, rebuilt from the folders when needed; the
    queries (select, values, rows) are IndexReader's and never write."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self._ready = False
        self._reindexing = (
            False  # set while reindex() runs: a (re)created table is not rebuilt twice
        )

    # -- connection and self-repair

    def _connect(self, durable: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        if not durable:  # rows of a table not yet in use: a crash loses nothing the swap needs
            conn.execute("PRAGMA synchronous = OFF")
        return conn

    def _delete_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _create_if_needed(self) -> bool:
        """Create the table unless a healthy one exists; True if it was (re)created."""
        conn = self._connect()
        try:
            if schema_ok(conn):
                for statement in _CREATE_INDEXES:  # an index written by an older fsmrun
                    conn.execute(statement)
                return False
            conn.execute("BEGIN IMMEDIATE")
            if schema_ok(conn):  # another process created it while we waited
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
            if not is_corruption(exc):
                raise ResultsFolderError(
                    f"cannot open the index {self.path} ({exc}); {FIX_HINT}"
                ) from exc
            log.warning("run index %s is damaged (%s); rebuilding it", self.path, exc)
            self._delete_files()
            created = self._create_if_needed()
        self._ready = True
        if created and not self._reindexing:
            self.reindex()

    def _run(self, work: Callable[[sqlite3.Connection], _T], durable: bool = True) -> _T:
        """Run `work` in one transaction; a damaged index is rebuilt once and `work` retried.
        `durable=False`: not synced to disk at commit (rows of the table a reindex builds)."""
        for attempt in range(2):
            try:
                self._ensure()
                conn = self._connect(durable)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    result = work(conn)
                    fault_point("index_txn")
                    conn.execute("COMMIT")
                    return result
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                if attempt or not is_corruption(exc):
                    raise ResultsFolderError(f"index {self.path}: {exc}; {FIX_HINT}") from exc
                log.warning("run index %s is damaged (%s); rebuilding it", self.path, exc)
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
        hash_listing = settled_listing(hash_dir, versions=True)
        exp_listing = settled_listing(hash_dir.parent, versions=False)

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
        """Rebuild every row from the run folders alone (listed and read by `workers`
        processes when there are many); the number of runs indexed."""
        self._reindexing = True
        try:
            return self._reindex(workers)
        finally:
            self._reindexing = False

    def _reindex(self, workers: int | None) -> int:
        dirs: dict[str, tuple[int, str]] = {}
        hash_dirs: list[str] = []
        for exp in visible_names(self.root):
            listing = settled_listing(self.root / exp, versions=False)
            names = listing[1] if listing else visible_names(self.root / exp)
            if listing is not None:
                dirs[exp] = (listing[0], "/".join(names))
            hash_dirs += [f"{exp}/{name}" for name in names]
        # Rows go into a new table in batches (memory stays flat, writers wait at most one
        # batch), which then replaces the old one at once: readers never see half an index.
        self._run(lambda conn: [conn.execute(statement) for statement in _CREATE_NEW])
        count, batch, unsettled = 0, [], set()
        for kind, rel, item in iter_hash_folders(self.root, hash_dirs, workers):
            if kind == "run":
                batch.append(item)
            elif kind == "dir" and item is not None:
                dirs[rel] = item
            else:  # a listing not to be trusted, or an unreadable run folder
                if kind == "bad":
                    self._skip(self.root / rel, item)
                    dirs.pop(rel.rsplit("/", 1)[0], None)  # list it again: a run in it is unread
                unsettled.add(rel.split("/", 1)[0])
            if len(batch) >= _BATCH:
                self._run(lambda conn, rows=batch: conn.executemany(_INSERT_NEW, rows), False)
                count, batch = count + len(batch), []
        self._run(lambda conn, rows=batch: conn.executemany(_INSERT_NEW, rows), False)
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


def _count_in(conn: sqlite3.Connection, table: str, column: str, values: list[str]) -> int:
    sql = f"SELECT COUNT(*) FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))"
    return conn.execute(sql, (json.dumps(values),)).fetchone()[0]
