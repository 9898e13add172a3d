"""The SQLite index `<root>/registry.sqlite`: one row per run, a cache of the run folders
(the source of truth); writers rebuild it when missing or damaged, listing only reads."""

from __future__ import annotations

import difflib
import json
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fsmrun.base.faults import fault_point
from fsmrun.runs.layout import FIX_HINT, ResultsFolderError, iter_run_folders, make_dirs
from fsmrun.runs.lock import lock_held
from fsmrun.runs.run_folder import STATUSES, RunFolder, RunFolderError, status_now
from fsmrun.schemas.run_row import RunRow

log = logging.getLogger(__name__)

INDEX_FILE = "registry.sqlite"
BUSY_TIMEOUT_S = 30.0
INDEX_SCHEMA_VERSION = 1
SORT_KEYS: tuple[str, ...] = tuple(f for f in RunRow.model_fields if f != "tags")

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
    "tags": "TEXT NOT NULL",  # JSON object of labels.json's tags
}
_COLUMNS = tuple(_COLUMN_TYPES)
_CREATE = "CREATE TABLE runs ({})".format(", ".join(f"{c} {t}" for c, t in _COLUMN_TYPES.items()))
_UPSERT = "INSERT OR REPLACE INTO runs ({}) VALUES ({})".format(
    ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
)
_T = TypeVar("_T")


def is_plain_name(name: str) -> bool:
    """A single folder name under the results root: no separator, not hidden, not '..'."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def run_row(root: str | os.PathLike[str], folder: str | os.PathLike[str]) -> RunRow:
    """The RunRow of one run folder (status as recorded); an unreadable metrics.json is skipped."""
    folder = Path(folder)
    run = RunFolder(folder)
    record = run.read_record()
    try:
        metrics = run.read_metrics()
    except RunFolderError as exc:
        log.warning("%s", exc)
        metrics = None
    try:
        rel = folder.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError as exc:
        raise ResultsFolderError(f"{folder} is not inside the results folder {root}") from exc
    best = metrics.best if metrics else None
    return RunRow(
        run_id=record.run_id,
        experiment=record.experiment,
        config_hash=record.config_hash,
        version=record.version,
        folder=rel,
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
        tags=_tags_of(run),
    )


def _tags_of(run: RunFolder) -> dict[str, str]:
    """labels.json's tags; a damaged file is a warning, not a lost row."""
    try:
        return run.read_labels().tags
    except RunFolderError as exc:
        log.warning("%s", exc)
        return {}


def _now_row(root: Path, row: RunRow) -> RunRow:
    writer = lock_held(root / row.folder) if row.status == "running" else None
    status = status_now(row.status, row.pid, row.hostname, row.heartbeat, writer=writer)
    return row if status == row.status else row.model_copy(update={"status": status})


def _sorted_rows(rows: list[RunRow], sort: str | None, descending: bool) -> list[RunRow]:
    key = sort or "created"
    present = [r for r in rows if getattr(r, key) is not None]
    missing = [r for r in rows if getattr(r, key) is None]
    present.sort(key=lambda r: (getattr(r, key), r.run_id), reverse=descending)
    return present + sorted(missing, key=lambda r: r.run_id)


def _check_choice(value: str | None, valid: tuple[str, ...], what: str) -> None:
    if value is not None and value not in valid:
        close = difflib.get_close_matches(value, valid, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ResultsFolderError(f"unknown {what} {value!r}{hint}; valid: {', '.join(valid)}")


def check_filters(status: str | None, sort: str | None) -> None:
    """ResultsFolderError naming the valid choices for an unknown status or sort key."""
    _check_choice(status, STATUSES, "status")
    _check_choice(sort, SORT_KEYS, "sort key")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """DatabaseError that a rebuild can fix, as opposed to locks and unwritable folders."""
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed", ...
    message = str(exc).lower()
    return not any(w in message for w in ("locked", "busy", "readonly", "unable to open", "disk"))


def _has_runs_table(conn: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
    return conn.execute(query).fetchone() is not None


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
        return tuple(columns) == _COLUMNS

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
            conn.execute(_CREATE)
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
                raise ResultsFolderError(
                    f"cannot open the index {self.path} ({exc}); {FIX_HINT}"
                ) from exc
            log.warning("run index %s is damaged (%s); rebuilding it", self.path, exc)
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
                    raise ResultsFolderError(f"index {self.path}: {exc}; {FIX_HINT}") from exc
                log.warning("run index %s is damaged (%s); rebuilding it", self.path, exc)
                self._delete_files()
                self._ready = False
        raise AssertionError("unreachable")

    # -- public operations

    def upsert_folder(self, folder: str | os.PathLike[str]) -> RunRow:
        """Read run.json (+ metrics.json) of `folder` and insert or replace its row."""
        row = run_row(self.root, folder)
        self._run(lambda conn: conn.execute(_UPSERT, self._values(row)))
        return row

    def reindex(self) -> int:
        """Rebuild every row from the run folders alone; the number of runs indexed."""
        rows = []
        for folder in iter_run_folders(self.root):
            try:
                rows.append(run_row(self.root, folder))
            except (ResultsFolderError, RunFolderError) as exc:
                self._skip(folder, exc)

        def rebuild(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM runs")
            conn.executemany(_UPSERT, [self._values(r) for r in rows])

        self._run(rebuild)
        return len(rows)

    def rows(
        self,
        experiment: str | None = None,
        status: str | None = None,
        sort: str | None = None,
        descending: bool = False,
    ) -> list[RunRow]:
        """Every run folder under the root with its status now, filtered and sorted (default:
        by created). Only reads: never creates, repairs or writes the index or a folder.

        The folders found by a directory scan are the runs; the index supplies their rows, so
        only folders it lacks (copied in, or an index missing, damaged or unreadable) and rows
        recorded as running (their heartbeat lives in run.json) are read from the folders.
        """
        check_filters(status, sort)
        if experiment is not None and not is_plain_name(experiment):
            return []  # "../x" or "a/b" names no experiment folder under the root
        indexed = self._read_index(experiment)
        rows = []
        for folder in iter_run_folders(self.root, experiment):
            rel = folder.relative_to(self.root).as_posix()
            row = indexed.get(rel)
            if row is None or row.status == "running":
                try:
                    row = run_row(self.root, folder)
                except (ResultsFolderError, RunFolderError) as exc:
                    if row is None:
                        self._skip(folder, exc)
                        continue
                    log.warning("%s", exc)
            rows.append(_now_row(self.root, row))
        if status is not None:
            rows = [r for r in rows if r.status == status]
        return _sorted_rows(rows, sort, descending)

    def _skip(self, folder: Path, exc: Exception) -> None:
        if folder not in self._skipped:  # one warning per folder, also after reindex()
            self._skipped.add(folder)
            log.warning("skipping %s: %s", folder, exc)

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

    def _read_index(self, experiment: str | None) -> dict[str, RunRow]:
        """Indexed rows by folder, read through a read-only connection; {} when there is no
        index or it cannot be read (the caller then reads the folders)."""
        if not self.path.is_file():
            return {}
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args: tuple[str, ...] = ()
        if experiment is not None:
            sql, args = sql + " WHERE experiment = ?", (experiment,)
        try:
            conn = sqlite3.connect(self._read_only_uri(), uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                if not self._schema_ok(conn) and not _has_runs_table(conn):
                    raise sqlite3.DatabaseError("not an index of this fsmrun version")
                if not self._schema_ok(conn):  # other columns: not damage, just out of date
                    log.warning(
                        "registry index %s was written by another fsmrun version; reading the "
                        "run folders (`fsmrun ls --reindex` rebuilds it)",
                        self.path,
                    )
                    return {}
                values = conn.execute(sql, args).fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                log.warning(
                    "run index %s is damaged (%s); reading the run folders "
                    "(`fsmrun ls --reindex` rebuilds it)",
                    self.path,
                    exc,
                )
            return {}
        indexed = {}
        for v in values:
            try:
                fields = dict(zip(_COLUMNS, v, strict=True))
                row = RunRow.model_validate({**fields, "tags": json.loads(fields["tags"])})
            except ValueError:  # a damaged row (invalid, or bad JSON): its folder is read
                continue
            indexed[row.folder] = row
        return indexed

    @staticmethod
    def _values(row: RunRow) -> tuple[Any, ...]:
        return tuple(
            json.dumps(row.tags, sort_keys=True) if c == "tags" else getattr(row, c)
            for c in _COLUMNS
        )
