"""The run registry: versioned run folders, their files, liveness, run lookup, the SQLite index.

Folders `<root>/<experiment>/<hash12>/v<N>/` are the source of truth; `<root>/registry.sqlite`
is a cache of their key fields that is rebuilt from them whenever it is missing or damaged.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from fsmrun.core.io import atomic_write_json
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import EnvInfo, Metrics, RunRecord, RunStatus
from fsmrun.schemas.registry import RunRow

log = logging.getLogger(__name__)

RESULTS_ENV_VAR = "FSMRUN_RESULTS_DIR"
DEFAULT_RESULTS_DIR = "results"
HASH_PREFIX_LEN = 12
RUN_FILE, CONFIG_FILE, ENV_FILE, METRICS_FILE = (
    "run.json",
    "config.json",
    "env.json",
    "metrics.json",
)
INDEX_FILE = "registry.sqlite"
# The loop beats every ~10 s; a record silent for this long belongs to a dead process.
HEARTBEAT_TIMEOUT_S = 120.0
BUSY_TIMEOUT_S = 30.0
INDEX_SCHEMA_VERSION = 1
STATUSES: tuple[str, ...] = get_args(RunStatus)
SORT_KEYS: tuple[str, ...] = tuple(RunRow.model_fields)

_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_FIX = f"choose a writable folder with --results-dir or the {RESULTS_ENV_VAR} environment variable"


class RegistryError(ValueError):
    """A registry problem a user can cause or fix (unwritable folder, unknown run, bad key)."""


class RunNotFound(RegistryError):
    """No run matches a reference; `suggestions` holds close run ids."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


class AmbiguousRun(RegistryError):
    """A prefix matches several runs; `candidates` holds their ids."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


def default_results_root(value: str | os.PathLike[str] | None = None) -> Path:
    """`value` if given, else $FSMRUN_RESULTS_DIR, else ./results."""
    if value:
        return Path(value)
    return Path(os.environ.get(RESULTS_ENV_VAR) or DEFAULT_RESULTS_DIR)


def run_id_for(experiment: str, config_hash: str, version: int) -> str:
    """'<experiment>-<hash12>-v<N>'."""
    return f"{experiment}-{config_hash[:HASH_PREFIX_LEN]}-v{version}"


# ---------------------------------------------------------------------------- run folders


def _versions(hash_dir: Path) -> list[int]:
    """Versions N with a v<N> folder under `hash_dir`, ascending (hidden trash names skipped)."""
    try:
        names = os.listdir(hash_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_VERSION_RE.match, names) if m)


def _make_dirs(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(f"cannot create folder {folder} ({exc.strerror}); {_FIX}") from exc


def _claim(hash_dir: Path, first: int) -> int:
    """Create v<N> for the smallest free N >= first; mkdir is atomic, so one process wins each N."""
    version = first
    for _ in range(100_000):
        try:
            os.mkdir(hash_dir / f"v{version}")
            return version
        except FileExistsError:
            version += 1
        except OSError as exc:
            raise RegistryError(
                f"cannot create a run folder in {hash_dir} ({exc}); {_FIX}"
            ) from exc
    raise RegistryError(f"no free version under {hash_dir}")


def allocate_run_dir(
    root: str | os.PathLike[str], experiment: str, config_hash: str, *, overwrite: bool = False
) -> tuple[Path, int]:
    """Claim `<root>/<experiment>/<hash12>/v<N>/` and return (folder, N).

    N is one past the newest version; two processes started together get different versions.
    With `overwrite`, the newest version is replaced (moved aside atomically, claimed again,
    then its old tree deleted); a newest run that is still alive is refused.
    """
    hash_dir = Path(root) / experiment / config_hash[:HASH_PREFIX_LEN]
    _make_dirs(hash_dir)
    existing = _versions(hash_dir)
    if overwrite and existing:
        newest = existing[-1]
        folder = hash_dir / f"v{newest}"
        _refuse_if_alive(folder)
        trash = hash_dir / f".trash-v{newest}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:  # another process moved it first: take a fresh version
            return allocate_run_dir(root, experiment, config_hash)
        except OSError as exc:
            raise RegistryError(f"cannot replace {folder} ({exc.strerror}); {_FIX}") from exc
        version = _claim(hash_dir, newest)
        shutil.rmtree(trash, ignore_errors=True)
        return hash_dir / f"v{version}", version
    version = _claim(hash_dir, existing[-1] + 1 if existing else 1)
    return hash_dir / f"v{version}", version


def _refuse_if_alive(folder: Path) -> None:
    try:
        record = read_run_record(folder)
    except RegistryError:
        return
    if effective_status(record) == "running":
        raise RegistryError(
            f"cannot overwrite {record.run_id}: it is still running (pid {record.pid} on "
            f"{record.hostname}); stop it first or run without --overwrite"
        )


def iter_run_folders(root: str | os.PathLike[str], experiment: str | None = None) -> Iterator[Path]:
    """Every `<root>/<experiment>/<hash>/v<N>/` holding a run.json, in path order."""
    root = Path(root)
    if not root.is_dir():
        return
    experiments = [experiment] if experiment else sorted(os.listdir(root))
    for exp in experiments:
        exp_dir = root / exp
        if exp.startswith(".") or not exp_dir.is_dir():
            continue
        for hash_name in sorted(os.listdir(exp_dir)):
            if hash_name.startswith(".") or not (exp_dir / hash_name).is_dir():
                continue
            for version in _versions(exp_dir / hash_name):
                folder = exp_dir / hash_name / f"v{version}"
                if (folder / RUN_FILE).is_file():
                    yield folder


# ---------------------------------------------------------------------------- files

_M = TypeVar("_M", bound=BaseModel)


def _read_model(path: Path, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RegistryError(
            f"{path} is not a valid {model.__name__}: {where}: {first['msg']}"
        ) from None
    except OSError as exc:
        raise RegistryError(f"cannot read {path} ({exc.strerror})") from exc


def _read_optional(path: Path, model: type[_M]) -> _M | None:
    return _read_model(path, model) if path.is_file() else None


def read_run_record(folder: str | os.PathLike[str]) -> RunRecord:
    """The RunRecord of run.json; RegistryError if the folder is not a run folder."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise RegistryError(f"{folder} is not a run folder (no {RUN_FILE})")
    return _read_model(path, RunRecord)


def write_run_record(folder: str | os.PathLike[str], record: RunRecord) -> None:
    """Write run.json atomically."""
    atomic_write_json(Path(folder) / RUN_FILE, record)


def update_run_record(folder: str | os.PathLike[str], **changes: Any) -> RunRecord:
    """Read run.json, apply `changes` (validated), write it back atomically; the new record."""
    record = read_run_record(folder)
    record = RunRecord.model_validate({**record.model_dump(), **changes})
    write_run_record(folder, record)
    return record


def read_metrics(folder: str | os.PathLike[str]) -> Metrics | None:
    """metrics.json, or None before the run has finished once."""
    return _read_optional(Path(folder) / METRICS_FILE, Metrics)


def read_config(folder: str | os.PathLike[str]) -> ExperimentConfig | None:
    """config.json, or None if the run died before writing it."""
    return _read_optional(Path(folder) / CONFIG_FILE, ExperimentConfig)


def read_env(folder: str | os.PathLike[str]) -> EnvInfo | None:
    """env.json, or None if the run died before writing it."""
    return _read_optional(Path(folder) / ENV_FILE, EnvInfo)


@dataclass(frozen=True)
class RunInfo:
    """One run folder with its files loaded."""

    folder: Path
    record: RunRecord
    config: ExperimentConfig | None
    env: EnvInfo | None
    metrics: Metrics | None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        """Status now (see `effective_status`)."""
        return effective_status(self.record)


def load_run(folder: str | os.PathLike[str]) -> RunInfo:
    """Load run.json, config.json, env.json and metrics.json of one run folder."""
    folder = Path(folder)
    return RunInfo(
        folder=folder,
        record=read_run_record(folder),
        config=read_config(folder),
        env=read_env(folder),
        metrics=read_metrics(folder),
    )


# ---------------------------------------------------------------------------- liveness


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) would kill on Windows; rely on heartbeat
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _status_now(
    status: str, pid: int | None, hostname: str, heartbeat: float, now: float | None = None
) -> str:
    if status != "running":
        return status
    now = time.time() if now is None else now
    if now - heartbeat > HEARTBEAT_TIMEOUT_S:
        return "interrupted"
    if pid is not None and hostname == socket.gethostname() and not pid_alive(pid):
        return "interrupted"
    return "running"


def effective_status(record: RunRecord, *, now: float | None = None) -> str:
    """The record's status, except that a 'running' run whose process is gone (pid dead on this
    host, or no heartbeat for HEARTBEAT_TIMEOUT_S) is 'interrupted'."""
    return _status_now(record.status, record.pid, record.hostname, record.heartbeat, now)


def mark_interrupted_if_dead(folder: str | os.PathLike[str]) -> RunRecord:
    """Persist 'interrupted' in run.json if the record says running but its process is gone."""
    record = read_run_record(folder)
    if record.status == "running" and effective_status(record) == "interrupted":
        record = update_run_record(folder, status="interrupted", updated=time.time(), pid=None)
    return record


# ---------------------------------------------------------------------------- lookup


def _run_ids(root: Path) -> dict[str, Path]:
    ids = {}
    for folder in iter_run_folders(root):
        hash_dir = folder.parent
        ids[run_id_for(hash_dir.parent.name, hash_dir.name, int(folder.name[1:]))] = folder
    return ids


def resolve_run(root: str | os.PathLike[str], ref: str) -> Path:
    """The run folder `ref` names: a run folder path, a run id, or a unique prefix of one."""
    root = Path(root)
    if not ref.strip():
        raise RunNotFound("empty run reference; give a run id, a prefix of one or a run folder")
    for candidate in (Path(ref), root / ref):
        if (candidate / RUN_FILE).is_file():
            return candidate
    if "/" in ref or os.sep in ref:  # run ids hold no slash: this was meant as a folder
        what = "is a folder but not a run folder" if Path(ref).is_dir() else "does not exist"
        raise RunNotFound(f"{ref} {what} (no {RUN_FILE} in it)")
    ids = _run_ids(root)
    if ref in ids:
        return ids[ref]
    matches = sorted(run_id for run_id in ids if run_id.startswith(ref))
    if len(matches) == 1:
        return ids[matches[0]]
    if matches:
        shown = "\n  ".join(matches[:20]) + ("\n  ..." if len(matches) > 20 else "")
        raise AmbiguousRun(
            f"{ref!r} matches {len(matches)} runs; give more of the id:\n  {shown}", matches
        )
    if not ids:
        raise RunNotFound(f"no run {ref!r}: no runs under {root} (set --results-dir?)")
    close = difflib.get_close_matches(ref, list(ids), n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else "; `fsmrun ls` lists the runs"
    raise RunNotFound(f"no run {ref!r} under {root}{hint}", close)


# ---------------------------------------------------------------------------- index

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
_CREATE = "CREATE TABLE runs ({})".format(", ".join(f"{c} {t}" for c, t in _COLUMN_TYPES.items()))
_UPSERT = "INSERT OR REPLACE INTO runs ({}) VALUES ({})".format(
    ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
)
_T = TypeVar("_T")


def run_row(root: str | os.PathLike[str], folder: str | os.PathLike[str]) -> RunRow:
    """The RunRow of one run folder (status as recorded); an unreadable metrics.json is skipped."""
    folder = Path(folder)
    record = read_run_record(folder)
    try:
        metrics = read_metrics(folder)
    except RegistryError as exc:
        log.warning("%s", exc)
        metrics = None
    try:
        rel = folder.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError as exc:
        raise RegistryError(f"{folder} is not inside the results folder {root}") from exc
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
    )


def _now_row(row: RunRow) -> RunRow:
    status = _status_now(row.status, row.pid, row.hostname, row.heartbeat)
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
        raise RegistryError(f"unknown {what} {value!r}{hint}; valid: {', '.join(valid)}")


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """DatabaseError that a rebuild can fix, as opposed to locks and unwritable folders."""
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed", ...
    message = str(exc).lower()
    return not any(w in message for w in ("locked", "busy", "readonly", "unable to open", "disk"))


class RegistryIndex:
    """`<root>/registry.sqlite`: one row per run, rebuilt from the folders when needed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        self._ready = False

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
        _make_dirs(self.root)
        if not self.path.exists():
            self._delete_files()  # a stale -wal must not be replayed into a new database
        try:
            created = self._create_if_needed()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise RegistryError(f"cannot open the index {self.path} ({exc}); {_FIX}") from exc
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
                    conn.execute("COMMIT")
                    return result
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                if attempt or not _is_corruption(exc):
                    raise RegistryError(f"index {self.path}: {exc}; {_FIX}") from exc
                log.warning("registry index %s is damaged (%s); rebuilding it", self.path, exc)
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
            except RegistryError as exc:
                log.warning("skipping %s: %s", folder, exc)

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
        """Indexed runs with their status now, filtered and sorted (default: by created).

        Rows whose folder is gone are dropped; rows recorded as running are refreshed from
        their run.json (the heartbeat lives there). An index that cannot be written (read-only
        results folder) is bypassed: the rows are read from the folders.
        """
        _check_choice(status, STATUSES, "status")
        _check_choice(sort, SORT_KEYS, "sort key")
        try:
            rows = self._indexed_rows(experiment)
        except RegistryError as exc:
            log.warning("%s; reading the run folders instead", exc)
            rows = []
            for folder in iter_run_folders(self.root, experiment):
                try:
                    rows.append(run_row(self.root, folder))
                except RegistryError as err:
                    log.warning("skipping %s: %s", folder, err)
        rows = [_now_row(r) for r in rows]
        if status is not None:
            rows = [r for r in rows if r.status == status]
        return _sorted_rows(rows, sort, descending)

    def _indexed_rows(self, experiment: str | None) -> list[RunRow]:
        def select(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
            if experiment is None:
                return conn.execute(sql).fetchall()
            return conn.execute(sql + " WHERE experiment = ?", (experiment,)).fetchall()

        rows, gone = [], []
        for values in self._run(select):
            row = RunRow.model_validate(dict(zip(_COLUMNS, values, strict=True)))
            folder = self.root / row.folder
            if not (folder / RUN_FILE).is_file():
                gone.append((row.run_id,))
                continue
            if row.status == "running":  # refresh: the heartbeat and the end are in run.json
                try:
                    row = self.upsert_folder(folder)
                except RegistryError as exc:
                    log.warning("%s", exc)
            rows.append(row)
        if gone:
            self._run(lambda conn: conn.executemany("DELETE FROM runs WHERE run_id = ?", gone))
        return rows

    @staticmethod
    def _values(row: RunRow) -> tuple[Any, ...]:
        return tuple(getattr(row, c) for c in _COLUMNS)
