"""Where one sweep cell stands, read from its run folders, and the per-config training lock
that keeps every config trained by at most one process at a time, across sweeps.

Both are used by the coordinator (to plan) and by the process that trains a cell (to decide,
under the lock, whether to train, resume or take a result another process left). No torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fsmrun.base.errors import EnvironmentFailure
from fsmrun.runs.layout import HASH_PREFIX_LEN, runs_of_config
from fsmrun.runs.run_folder import effective_status
from fsmrun.schemas.sweep import SweepCell

# A run's status -> its cell's; any other (failed) run status makes the cell failed.
RUN_TO_CELL = {"completed": "done", "running": "running", "interrupted": "interrupted"}
LOCKS_DIR = ".locks"  # under <results>/sweeps/


@dataclass(frozen=True)
class CellState:
    """Where a cell stands according to its run folders."""

    status: str
    folder: Path | None
    run_id: str | None
    error: str | None = None


def cell_state(
    root: Path, experiment: str, chash: str, previous: SweepCell | None = None
) -> CellState:
    """done if any run of the config completed; else the newest run's status (running only
    while its writer holds the folder's lock); else todo (or failed, if the last attempt
    failed before it had a run folder)."""
    runs = runs_of_config(root, experiment, chash)
    for folder, record in runs:
        if record.status == "completed":
            return CellState("done", folder.path, record.run_id)
    if runs:
        folder, record = runs[-1]
        status = RUN_TO_CELL.get(effective_status(record, folder=folder.path), "failed")
        return CellState(status, folder.path, record.run_id, record.error)
    if previous is not None and previous.status == "failed" and previous.run_id is None:
        return CellState("failed", None, None, previous.error)
    return CellState("todo", None, None)


def config_lock_path(root: Path, experiment: str, chash: str) -> Path:
    """`<results>/sweeps/.locks/<experiment>-<hash12>.lock`: one per config, all sweeps."""
    return Path(root) / "sweeps" / LOCKS_DIR / f"{experiment}-{chash[:HASH_PREFIX_LEN]}.lock"


@contextlib.contextmanager
def config_lock(root: Path, experiment: str, chash: str) -> Iterator[bool]:
    """Try to take the config's exclusive training lock (an OS flock, so a killed holder
    drops it); yields whether this process got it. Never blocks."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform
        yield True
        return
    path = config_lock_path(root, experiment, chash)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise EnvironmentFailure.from_os_error(exc, path) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the flock
