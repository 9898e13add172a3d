"""The one owner of a run folder `<root>/<experiment>/<hash12>/v<N>/`: every path in it, reading
and atomically writing each file, the run record's status transitions, heartbeat and lock.
It never imports the results layout (`runs.layout`, built on it) nor torch."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.base.io import atomic_write_json, atomic_write_text, prev_path, read_small_file
from fsmrun.runs.lock import FolderLock, lock_held, pid_alive, remove_leftovers
from fsmrun.schemas.analysis import AnalysisReport
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import EnvInfo, Metrics, RunLabels, RunRecord, RunStatus

RUN_FILE, CONFIG_FILE, ENV_FILE, METRICS_FILE = (
    "run.json",
    "config.json",
    "env.json",
    "metrics.json",
)
FSM_JSON_FILE, FSM_DOT_FILE = "fsm.json", "fsm.dot"
LABELS_FILE = "labels.json"  # tags and note: written beside the data files, never into them
HISTORY_FILE = "logs/history.jsonl"
CHECKPOINTS_DIR, CAPTURES_DIR, PLOTS_DIR = "checkpoints", "captures", "plots"
ANALYSIS_DIR = "analysis"
ANALYSIS_FILE, EXTRACTED_JSON_FILE, EXTRACTED_DOT_FILE = (
    "analysis.json",
    "extracted.json",
    "extracted.dot",
)
_CAPTURE_RE = re.compile(r"^epoch_([0-9]+)\.pt$")
CheckpointName = Literal["last", "best"]
# The loop beats every HEARTBEAT_S; a record silent for HEARTBEAT_TIMEOUT_S is of a dead process.
HEARTBEAT_S = 10.0
HEARTBEAT_TIMEOUT_S = 120.0
STATUSES: tuple[str, ...] = get_args(RunStatus)

_M = TypeVar("_M", bound=BaseModel)


class RunFolderError(UserError):
    """A run folder that is missing, unreadable, invalid or in use."""


def _read_model(path: Path, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        what = f"{path} is not a valid {model.__name__}"
        raise RunFolderError(describe_validation_error(exc, what)) from None
    except OSError as exc:
        raise RunFolderError(f"cannot read {path} ({exc.strerror})") from exc


def read_model_file(path: str, model: type[_M], *, optional: bool) -> _M | None:
    """The JSON file at `path` as `model`: what RunFolder's readers do, for a caller that
    reads many folders (the index) with plain string paths. A missing file: None when
    `optional`, else RunFolderError saying the folder is no run folder."""
    try:
        data = read_small_file(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        if optional:
            return None
        folder, name = os.path.split(path)
        raise RunFolderError(f"{folder} is not a run folder (no {name})") from None
    except OSError as exc:
        raise RunFolderError(f"cannot read {path} ({exc.strerror})") from exc
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        what = f"{path} is not a valid {model.__name__}"
        raise RunFolderError(describe_validation_error(exc, what)) from None


# ---------------------------------------------------------------------------- liveness


def status_now(
    status: str,
    pid: int | None,
    hostname: str,
    heartbeat: float,
    now: float | None = None,
    *,
    writer: bool | None = None,
) -> str:
    """`status`, but a running one whose writer is gone is interrupted. `writer` is what the
    folder's lock says (held or not); only where it cannot be probed (None) do a dead pid on
    this host or a heartbeat older than HEARTBEAT_TIMEOUT_S decide."""
    if status != "running":
        return status
    if writer is not None:
        return "running" if writer else "interrupted"
    now = time.time() if now is None else now
    if now - heartbeat > HEARTBEAT_TIMEOUT_S:
        return "interrupted"
    if pid is not None and hostname == socket.gethostname() and not pid_alive(pid):
        return "interrupted"
    return "running"


def effective_status(
    record: RunRecord, *, now: float | None = None, folder: str | os.PathLike[str] | None = None
) -> str:
    """The record's status, except that a 'running' run whose writer is gone is 'interrupted':
    from the lock of `folder` when given and probeable, else from its pid and heartbeat."""
    writer = lock_held(folder) if folder is not None and record.status == "running" else None
    return status_now(
        record.status, record.pid, record.hostname, record.heartbeat, now, writer=writer
    )


# ---------------------------------------------------------------------------- the folder


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
        return effective_status(self.record, folder=self.folder)


class RunFolder:
    """Paths, files, status and lock of one run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = FolderLock(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths
    def inside(self, *parts: str) -> Path:
        """`<folder>/<parts...>`; RunFolderError where one of its parts below the run folder is
        a symbolic link, since a write through it would land outside the run folder."""
        path = self.path
        for part in Path(*parts).parts:
            path = path / part
            if path.is_symlink():
                raise RunFolderError(
                    f"{path} is a symbolic link; fsmrun reads and writes only inside the run "
                    f"folder: remove the link (or replace it with a real folder)"
                )
        return path

    @property
    def run_json(self) -> Path:
        return self.path / RUN_FILE

    @property
    def config_json(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def env_json(self) -> Path:
        return self.path / ENV_FILE

    @property
    def metrics_json(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def history(self) -> Path:
        return self.inside(HISTORY_FILE)

    @property
    def labels_json(self) -> Path:
        return self.path / LABELS_FILE

    @property
    def fsm_json(self) -> Path:
        return self.path / FSM_JSON_FILE

    @property
    def fsm_dot(self) -> Path:
        return self.path / FSM_DOT_FILE

    @property
    def captures_dir(self) -> Path:
        return self.inside(CAPTURES_DIR)

    @property
    def plots_dir(self) -> Path:
        """`plots/`: figures derived from the other files, redrawn at will (never read back)."""
        return self.inside(PLOTS_DIR)

    @property
    def analysis_dir(self) -> Path:
        """`analysis/`: what `fsmrun analyze` derives from the model, regenerable at will."""
        return self.path / ANALYSIS_DIR

    @property
    def analysis_json(self) -> Path:
        return self.analysis_dir / ANALYSIS_FILE

    @property
    def extracted_json(self) -> Path:
        """`analysis/extracted.json`: the extracted machine in fsm.json's form."""
        return self.analysis_dir / EXTRACTED_JSON_FILE

    @property
    def extracted_dot(self) -> Path:
        return self.analysis_dir / EXTRACTED_DOT_FILE

    def analysis_figure(self, name: str, fmt: str) -> Path:
        """`analysis/<name>.<fmt>`."""
        return self.analysis_dir / f"{name}.{fmt}"

    @property
    def results_root(self) -> Path:
        """The results folder this run lives in (three levels up)."""
        return self.path.parents[2]

    def checkpoint(self, name: CheckpointName) -> Path:
        """`checkpoints/last.pt` or `checkpoints/best.pt`."""
        return self.inside(CHECKPOINTS_DIR, f"{name}.pt")

    def has_checkpoint(self, name: CheckpointName) -> bool:
        """Whether the checkpoint or its `.prev.pt` copy exists."""
        path = self.checkpoint(name)
        return path.exists() or prev_path(path).exists()

    def capture(self, epoch: int) -> Path:
        """`captures/epoch_NNNN.pt`."""
        return self.inside(CAPTURES_DIR, f"epoch_{epoch:04d}.pt")

    def capture_epochs(self) -> list[int]:
        """Epochs (1-based) with a capture file, ascending."""
        if not self.captures_dir.is_dir():
            return []
        found = (_CAPTURE_RE.match(p.name) for p in self.captures_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def is_run(self) -> bool:
        return self.run_json.is_file()

    def status(self) -> str:
        """The run's status now (see `effective_status`): liveness from the lock."""
        return effective_status(self.read_record(), folder=self.path)

    # -- reading
    def read_record(self) -> RunRecord:
        """run.json; RunFolderError if this is not a run folder."""
        if not self.run_json.is_file():
            raise RunFolderError(f"{self.path} is not a run folder (no {RUN_FILE})")
        return _read_model(self.run_json, RunRecord)

    def read_config(self) -> ExperimentConfig | None:
        """config.json, or None if the run died before writing it."""
        return self._optional(self.config_json, ExperimentConfig)

    def read_env(self) -> EnvInfo | None:
        return self._optional(self.env_json, EnvInfo)

    def read_fsm_json(self) -> str | None:
        """fsm.json as text, or None if the run died before writing it."""
        return self._optional_text(self.fsm_json)

    def read_fsm_dot(self) -> str | None:
        """fsm.dot as text, or None if the run died before writing it."""
        return self._optional_text(self.fsm_dot)

    def read_metrics(self) -> Metrics | None:
        """metrics.json, or None before the run has finished once."""
        return self._optional(self.metrics_json, Metrics)

    def read_analysis(self) -> AnalysisReport | None:
        """analysis/analysis.json, or None before `fsmrun analyze` ran on this run."""
        return self._optional(self.analysis_json, AnalysisReport)

    def read_labels(self) -> RunLabels:
        """labels.json: the run's tags and note (none when the file is missing)."""
        return self._optional(self.labels_json, RunLabels) or RunLabels()

    def label(
        self, tags: dict[str, str], *, remove: tuple[str, ...] = (), note: str | None = None
    ) -> RunLabels:
        """Add or change `tags`, drop the `remove` keys, replace the note when given; under the
        writer lock (so a run being trained is refused), written atomically. The new labels."""
        with self.lock():
            current = self.read_labels()
            kept = {k: v for k, v in current.tags.items() if k not in remove}
            labels = RunLabels.model_validate(
                {"tags": {**kept, **tags}, "note": current.note if note is None else note}
            )
            if labels != current:
                self.write_labels(labels)
        return labels

    def write_labels(self, labels: RunLabels) -> None:
        """labels.json, atomically (the caller holds the lock)."""
        atomic_write_json(self.labels_json, labels)

    def load(self) -> RunInfo:
        """run.json, config.json, env.json and metrics.json."""
        return RunInfo(
            self.path, self.read_record(), self.read_config(), self.read_env(), self.read_metrics()
        )

    @staticmethod
    def _optional(path: Path, model: type[_M]) -> _M | None:
        return _read_model(path, model) if path.is_file() else None

    @staticmethod
    def _optional_text(path: Path) -> str | None:
        if not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RunFolderError(f"cannot read {path} ({exc.strerror})") from exc

    # -- writing
    def write_config(self, exp: ExperimentConfig) -> None:
        atomic_write_text(self.config_json, exp.model_dump_json(indent=2) + "\n")

    def write_fsm(self, fsm_json: str, fsm_dot: str) -> None:
        atomic_write_text(self.fsm_json, fsm_json + "\n")
        atomic_write_text(self.fsm_dot, fsm_dot)

    def write_analysis(
        self, report: AnalysisReport, extracted_json: str | None, extracted_dot: str | None
    ) -> None:
        """The extracted machine (when there is one), then analysis.json (written last: its
        presence says the analysis is complete)."""
        if extracted_json is not None and extracted_dot is not None:
            atomic_write_text(self.extracted_json, extracted_json + "\n")
            atomic_write_text(self.extracted_dot, extracted_dot)
        else:
            for stale in (self.extracted_json, self.extracted_dot):
                stale.unlink(missing_ok=True)
        atomic_write_json(self.analysis_json, report)

    def write_env(self, env: EnvInfo | dict[str, Any]) -> None:
        atomic_write_json(self.env_json, env)

    def write_metrics(self, metrics: Metrics) -> None:
        atomic_write_json(self.metrics_json, metrics)

    def write_record(self, record: RunRecord) -> RunRecord:
        """Write run.json, keeping an audit mark set on disk meanwhile; the record written."""
        if record.audit_verified is None and self.run_json.is_file():
            on_disk = self.read_record().audit_verified
            if on_disk is not None:
                record = record.model_copy(update={"audit_verified": on_disk})
        atomic_write_json(self.run_json, record)
        return record

    def update_record(self, **changes: Any) -> RunRecord:
        """Read run.json, apply `changes` (validated), write it back; the new record."""
        record = self.read_record()
        record = RunRecord.model_validate({**record.model_dump(), **changes})
        atomic_write_json(self.run_json, record)
        return record

    # -- status transitions
    def heartbeat(self, record: RunRecord, *, steps: int, epochs: int) -> RunRecord:
        """Show life: the heartbeat time and progress in run.json."""
        update = {"heartbeat": time.time(), "steps": steps, "epochs": epochs}
        return self.write_record(record.model_copy(update=update))

    def set_status(
        self,
        record: RunRecord,
        status: RunStatus,
        *,
        steps: int,
        epochs: int,
        error: str | None = None,
    ) -> RunRecord:
        """Move the run to `status` (running, completed, failed, interrupted) in run.json."""
        now = time.time()
        update = {
            "status": status,
            "updated": now,
            "heartbeat": now,
            "steps": steps,
            "epochs": epochs,
            "error": error,
            "pid": record.pid if status == "running" else None,
        }
        return self.write_record(record.model_copy(update=update))

    def mark_interrupted_if_dead(self) -> RunRecord:
        """Persist 'interrupted' if the record says running but its process is gone."""
        record = self.read_record()
        if record.status == "running" and self.status() == "interrupted":
            with self.lock():
                record = self.update_record(status="interrupted", updated=time.time(), pid=None)
        return record

    # -- lock (see run_lock)
    def acquire_lock(self, *, new_folder: bool = False) -> None:
        """Take the folder's exclusive writer lock (see `FolderLock.acquire`), then clear
        leftovers of killed writes. RunFolderError naming the holder if another process has it."""
        if self._lock.held:
            return
        if not self._lock.acquire(new_folder=new_folder):
            raise RunFolderError(self.in_use_message())
        self.remove_leftovers()

    def release_lock(self) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the exclusive writer lock for the block (kept if it was held before)."""
        held = self._lock.held
        self.acquire_lock()
        try:
            yield
        finally:
            if not held:
                self.release_lock()

    def in_use_message(self) -> str:
        """'run X is being written by process PID on HOST; ...' from run.json."""
        try:
            record = self.read_record()
        except RunFolderError:
            return f"{self.path} is being written by another process; wait for it or kill it"
        return (
            f"run {record.run_id} is being written by process {record.pid} on "
            f"{record.hostname}; wait for it or kill it"
        )

    def refuse_if_written(self) -> None:
        """RunFolderError if a process holds the writer lock (or, unprobeable, looks alive)."""
        if self.is_run() and self.status() == "running":
            raise RunFolderError(self.in_use_message())

    def remove_leftovers(self) -> list[Path]:
        """Temporary files of writes a killed process never finished (call under the lock)."""
        partial = [self.checkpoint(n).with_name(f".{n}.pt.new") for n in ("last", "best")]
        return remove_leftovers(self.path, partial)
