"""Sweeps: cells' state read from the run folders, the sweep record (sweep.json), and an
idempotent run: done cells skipped, interrupted ones resumed, failed ones retried only when
asked. Only this (coordinating) process writes sweep.json and the index.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from fsmrun.base.errors import EnvironmentFailure
from fsmrun.base.faults import fault_point
from fsmrun.base.io import atomic_write_json
from fsmrun.runs.index import RunIndex
from fsmrun.runs.index_query import RunQuery
from fsmrun.runs.layout import HASH_PREFIX_LEN, ResultsFolderError
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.run_row import RunRow
from fsmrun.schemas.sweep import CELL_STATUSES, SweepCell, SweepRecord, SweepSpec
from fsmrun.sweeps.cells import RUN_TO_CELL, CellState, cell_state
from fsmrun.sweeps.executors import CellOutcome, CellTask, Executor, default_threads
from fsmrun.sweeps.spec import (
    Cell,
    SweepError,
    expand,
    list_suites,
    load_spec,
    spec_size,
    sweep_hash,
)

__all__ = [
    "SweepBusy",
    "completed_runs",
    "find_sweep",
    "read_record",
    "record_path",
    "refresh",
    "run_sweep",
    "sweep_id_for",
    "sweep_lock",
    "sweep_status",
    "write_record",
]

SWEEPS_DIR = "sweeps"
RECORD_FILE = "sweep.json"
LOCK_FILE = ".lock"
BUSY_RETRY_S = 1.0  # how often cells another process trains are looked at again


# ---------------------------------------------------------------------------- records


def sweeps_root(root: Path) -> Path:
    return Path(root) / SWEEPS_DIR


def record_path(root: Path, sweep_id: str) -> Path:
    return sweeps_root(root) / sweep_id / RECORD_FILE


def read_record(path: Path) -> SweepRecord:
    try:
        return SweepRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as err:
        raise SweepError(f"cannot read sweep record {path}: {err}") from None


class AmbiguousSweep(SweepError):
    """A sweep name or prefix that several sweeps share."""


def find_sweep(root: Path, ref: str) -> Path:
    """sweep.json of a sweep named by its id or a unique prefix of it, or by its name when
    one sweep has it. A name several sweeps share (different specs) is refused with a list of
    their ids, so a report never silently picks one."""
    folder = sweeps_root(root)
    ids = sorted(p.parent.name for p in folder.glob(f"*/{RECORD_FILE}")) if folder.is_dir() else []
    if ref in ids:
        return record_path(root, ref)
    named = [i for i in ids if i.rsplit("-", 1)[0] == ref] or [i for i in ids if i.startswith(ref)]
    if not named:
        known = f"; sweeps: {', '.join(ids)}" if ids else f"; no sweeps under {folder}"
        raise SweepError(f"no sweep {ref!r}{known}")
    if len(named) > 1:
        listed = []
        for sweep_id in named:
            record = read_record(record_path(root, sweep_id))
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.updated))
            done = record.counts.get("done", 0)
            listed.append(f"{sweep_id} ({done}/{len(record.cells)} done, updated {stamp})")
        raise AmbiguousSweep(
            f"{len(named)} sweeps match {ref!r} (different specs): {'; '.join(listed)}; "
            f"name one by its id, e.g. {named[0]}"
        )
    return record_path(root, named[0])


def resolve_sweep(root: Path, ref: str) -> Path:
    """A suite or spec file names the sweep of its current spec (by its hash) when that has a
    record, else the sweep of its name; anything else goes to `find_sweep`."""
    if ref in list_suites() or (ref.endswith(".toml") and Path(ref).is_file()):
        spec = load_spec(ref)
        path = record_path(root, sweep_id_for(spec, expand(spec)))
        return path if path.is_file() else find_sweep(root, spec.name)
    return find_sweep(root, ref)


def _cell_record(cell: Cell, status: str, run_id: str | None, error: str | None) -> SweepCell:
    # Built from values already typed (a validated cell, a status of CELL_STATUSES): checking
    # them again costs a second for a grid of 20,000 cells.
    return SweepCell.model_construct(
        index=cell.index,
        source=cell.experiment,
        experiment=cell.config.name,
        overrides=cell.overrides,
        config_hash=cell.config_hash,
        run_id=run_id,
        status=status,
        error=error,
    )


def count_statuses(cells: list[SweepCell]) -> dict[str, int]:
    counts = Counter(c.status for c in cells)
    return {status: counts.get(status, 0) for status in CELL_STATUSES}


def write_record(root: Path, record: SweepRecord) -> Path:
    record = record.model_copy(
        update={"updated": time.time(), "counts": count_statuses(record.cells)}
    )
    path = record_path(root, record.sweep_id)
    fault_point("sweep_record_write")
    atomic_write_json(path, record)
    return path


# ---------------------------------------------------------------------------- cell state


# From this many cells on, cell states come from one scan of the index, not folder by folder.
BULK_CELLS = 500


def cell_states(
    root: Path, keys: list[tuple[str, str]], previous: list[SweepCell | None]
) -> list[CellState]:
    """`cell_state` of each (experiment, config hash) in `keys`; a large sweep's from one
    query of the index (which reads only folders it does not describe), a small one's from
    its run folders."""
    if len(keys) < BULK_CELLS:
        return [cell_state(root, e, h, p) for (e, h), p in zip(keys, previous, strict=True)]
    query = RunQuery(config_hashes=frozenset(h for _, h in keys), sort="version")
    runs: dict[tuple[str, str], list[RunRow]] = {}
    for listed in RunIndex(root).select(query).listed:
        runs.setdefault((listed.row.experiment, listed.row.config_hash), []).append(listed.row)
    states = []
    for key, prev in zip(keys, previous, strict=True):
        rows = runs.get(key, [])
        done = next((r for r in rows if r.status == "completed"), None)
        if done is not None:
            states.append(CellState("done", root / done.folder, done.run_id))
        elif rows:
            newest = rows[-1]
            status = RUN_TO_CELL.get(newest.status, "failed")
            error = _recorded_error(root / newest.folder) if status == "failed" else None
            states.append(CellState(status, root / newest.folder, newest.run_id, error))
        elif prev is not None and prev.status == "failed" and prev.run_id is None:
            states.append(CellState("failed", None, None, prev.error))
        else:
            states.append(CellState("todo", None, None))
    return states


def _recorded_error(folder: Path) -> str | None:
    try:
        return RunFolder(folder).read_record().error
    except RunFolderError:
        return None


def completed_runs(root: Path, record: SweepRecord) -> tuple[list[Path], dict[str, int]]:
    """The run folders of the cells done now (read from the run folders, in cell order) and
    the count of cells per status."""
    folders, statuses = [], []
    keys = [(cell.experiment, cell.config_hash) for cell in record.cells]
    for state in cell_states(root, keys, list(record.cells)):
        statuses.append(state.status)
        if state.status == "done" and state.folder is not None:
            folders.append(state.folder)
    counts = Counter(statuses)
    return folders, {status: counts.get(status, 0) for status in CELL_STATUSES}


# ---------------------------------------------------------------------------- lock


class SweepBusy(SweepError):
    """Another coordinator holds the sweep's lock."""


@contextlib.contextmanager
def sweep_lock(root: Path, sweep_id: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking OS lock on `<sweeps>/<sweep_id>/.lock` (SweepBusy,
    naming the holder's pid, if another coordinator runs the sweep). The lock file holds the
    holder's pid; it is written in place, since replacing it would drop the lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform
        yield
        return
    path = sweeps_root(root) / sweep_id / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise EnvironmentFailure.from_os_error(exc, path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SweepBusy(
            f"sweep {sweep_id} is being run by process {holder}; wait or stop it"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """What one invocation did; `record` is the sweep.json written last."""

    record: SweepRecord
    path: Path
    started: int
    skipped: int


def sweep_status(
    root: Path,
    spec: SweepSpec,
    cells: list[Cell],
    record: SweepRecord | None,
    threads: int | None = None,
) -> SweepRecord:
    """The record of `cells` with every status read from the run folders now (`threads`: the
    per-cell thread count, kept from `record` when it has one)."""
    previous = {c.index: c for c in record.cells} if record else {}
    now = time.time()
    digest = sweep_hash(cells)
    keys = [(cell.config.name, cell.config_hash) for cell in cells]
    states = cell_states(root, keys, [previous.get(cell.index) for cell in cells])
    rows = [
        _cell_record(cell, state.status, state.run_id, state.error)
        for cell, state in zip(cells, states, strict=True)
    ]
    return SweepRecord(
        sweep_id=sweep_id_for(spec, cells),
        sweep_hash=digest,
        spec=spec,
        created=record.created if record else now,
        updated=now,
        threads=(record.threads if record else None) or threads,
        counts=count_statuses(rows),
        cells=rows,
    )


def check_size(spec: SweepSpec, max_cells: int | None) -> int:
    """The spec's cell count, computed without building a cell; SweepError above `max_cells`."""
    size = spec_size(spec)
    if max_cells is not None and size > max_cells:
        raise SweepError(
            f"sweep {spec.name} has {size:,} cells, over --max-cells {max_cells:,}; "
            f"narrow the grid or pass --max-cells {size}"
        )
    return size


def sweep_threads(record: SweepRecord | None, requested: int | None, default: int) -> int:
    """The per-cell torch thread count: the one the sweep started with (sweep.json), else the
    one asked for, else `default`. Bits depend on it, so a re-run may not change it."""
    if record is not None and record.threads is not None:
        if requested is not None and requested != record.threads:
            raise SweepError(
                f"sweep {record.sweep_id} trains every cell with {record.threads} thread(s) "
                f"(fixed at its start; CPU results depend on it): drop --threads or pass "
                f"--threads {record.threads}"
            )
        return record.threads
    return requested or default


def run_sweep(
    spec: SweepSpec,
    executor: Executor,
    *,
    results_root: Path,
    device: str = "cpu",
    retry_failed: bool = False,
    command: list[str] | None = None,
    on_outcome: Callable[[SweepCell, CellOutcome], None] | None = None,
    threads: int | None = None,
    max_cells: int | None = None,
    on_start: Callable[[SweepRecord, int], None] | None = None,
) -> SweepResult:
    """Run the cells of `spec` that are not done, in the one results folder `results_root`.

    todo cells are trained, interrupted ones resumed in their own folder, failed ones trained
    anew only with `retry_failed`. A cell whose config another process trains (another sweep,
    a dying worker) is waited for, and its result taken. Every cell trains with the sweep's
    thread count (`sweep_threads`), recorded in sweep.json. After each cell the coordinator
    indexes its run folder and rewrites sweep.json. KeyboardInterrupt stops the workers
    cleanly (their runs stay resumable), writes the record and propagates. Another
    coordinator on the same sweep is refused (SweepBusy). `on_start(record, n)`: the record
    and the number of cells to run, before the first starts.
    """
    root = Path(results_root)
    check_size(spec, max_cells)
    prepare = getattr(executor, "prepare", None)
    if callable(prepare):  # e.g. warm workers start up while the sweep is planned
        prepare()
    cells = expand(spec)
    with sweep_lock(root, sweep_id_for(spec, cells)):
        path = record_path(root, sweep_id_for(spec, cells))
        old = read_record(path) if path.is_file() else None
        chosen = sweep_threads(old, threads, default_threads(executor))
        record = sweep_status(root, spec, cells, old, chosen)
        return _run_locked(
            record,
            cells,
            executor,
            root,
            _Plan(device, retry_failed, command),
            on_outcome,
            on_start,
        )


def sweep_id_for(spec: SweepSpec, cells: list[Cell]) -> str:
    """'<name>-<hash12>': the sweep's folder under `<root>/sweeps/`."""
    return f"{spec.name}-{sweep_hash(cells)[:HASH_PREFIX_LEN]}"


@dataclass(frozen=True)
class _Plan:
    device: str
    retry_failed: bool
    command: list[str] | None


def _run_locked(
    record: SweepRecord,
    cells: list[Cell],
    executor: Executor,
    root: Path,
    plan: _Plan,
    on_outcome: Callable[[SweepCell, CellOutcome], None] | None,
    on_start: Callable[[SweepRecord, int], None] | None,
) -> SweepResult:
    path = write_record(root, record)
    tasks = [
        _task(cell, root, plan, record.threads)
        for cell, row in zip(cells, record.cells, strict=True)
        if row.status in ("todo", "interrupted", "running")
        or (row.status == "failed" and plan.retry_failed)
    ]
    if on_start is not None:
        on_start(record, len(tasks))
    index = RunIndex(root)  # only the coordinator writes it
    by_index = {c.index: c for c in cells}
    cell_rows = list(record.cells)
    busy: list[CellTask] = []
    by_task = {t.index: t for t in tasks}

    def finished(outcome: CellOutcome) -> None:
        nonlocal record
        if outcome.status == "busy":  # another process trains this config: look again later
            busy.append(by_task[outcome.index])
            return
        cell = by_index[outcome.index]
        state = cell_state(root, cell.config.name, cell.config_hash, None)
        if state.folder is not None:
            # the index is a cache; `fsmrun ls --reindex` rebuilds it
            with contextlib.suppress(ResultsFolderError):
                index.upsert_folder(state.folder)
        if state.status == "todo" and outcome.status == "failed":
            state = CellState("failed", None, None, outcome.error)
        row = _cell_record(cell, state.status, state.run_id, state.error or outcome.error)
        cell_rows[cell.index] = row
        record = record.model_copy(update={"cells": list(cell_rows)})
        write_record(root, record)
        fault_point("sweep_cell_result")
        if on_outcome is not None:
            on_outcome(row, outcome)

    try:
        pending = tasks
        while pending:
            executor.run(pending, finished)
            pending, busy[:] = list(busy), []
            if pending:
                time.sleep(BUSY_RETRY_S)
    finally:
        write_record(root, record)
    return SweepResult(read_record(path), path, len(tasks), len(cells) - len(tasks))


def _task(cell: Cell, root: Path, plan: _Plan, threads: int | None) -> CellTask:
    return CellTask(
        index=cell.index,
        config_json=cell.config.model_dump_json(),
        results_root=str(root),
        device=plan.device,
        command=list(plan.command or []),
        threads=threads,
        config_hash=cell.config_hash,
        coordinator_pid=os.getpid(),
        coordinator_host=socket.gethostname(),
    )


def refresh(root: Path, record: SweepRecord) -> SweepRecord:
    """`record` with every cell's status read from the run folders now (nothing written)."""
    cells = []
    keys = [(cell.experiment, cell.config_hash) for cell in record.cells]
    for cell, state in zip(record.cells, cell_states(root, keys, list(record.cells)), strict=True):
        now = {"status": state.status, "run_id": state.run_id, "error": state.error}
        unchanged = (cell.status, cell.run_id, cell.error) == tuple(now.values())
        cells.append(cell if unchanged else cell.model_copy(update=now))  # most are unchanged
    return record.model_copy(update={"cells": cells, "counts": count_statuses(cells)})
