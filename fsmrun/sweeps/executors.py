"""Where sweep cells run: in this process, on a local pool of warm worker processes, or as Ray
tasks. `run(tasks, on_outcome)` calls `on_outcome` in the coordinator as cells end.

Every cell trains with the torch thread count its task carries (the sweep's, fixed at its
start), so its bits do not depend on where or when it ran. The process that trains a cell holds
the config's training lock (`cells.config_lock`) and decides under it whether to train, resume
or take the result another process left: a cell it cannot lock comes back `busy`.
Workers write run folders only (never the SQLite index). No torch at import.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fsmrun.base.faults import fault_point
from fsmrun.sweeps.cells import cell_state, config_lock

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# After the coordinator is gone: a first SIGINT stops the run at its next step (last.pt kept);
# a second one, this much later, aborts it; the process exits this much after that.
ORPHAN_GRACE_S = 3.0
WATCH_INTERVAL_S = 0.25


@dataclass(frozen=True)
class CellTask:
    """One cell to run: train `config_json` (or resume its interrupted run) with `threads`
    torch threads. `resume_dir` is what the coordinator planned; the training process checks
    again under the config lock."""

    index: int
    config_json: str
    results_root: str
    device: str = "cpu"
    resume_dir: str | None = None
    command: list[str] = field(default_factory=list)
    threads: int | None = None  # torch intra-op threads (None: leave the process's count)
    config_hash: str = ""
    coordinator_pid: int | None = None  # a worker on `coordinator_host` stops when it is gone
    coordinator_host: str | None = None
    # "module:function" run instead of training (e.g. fsmrun.analysis.batch:analyze_cell), given
    # the task and returning its CellOutcome; named, not imported, so sweeps never import the
    # packages above it and the task stays picklable for forked workers and Ray.
    worker: str | None = None


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended: completed, failed, interrupted, todo (never started) or busy (another
    process trains its config now: try again later)."""

    index: int
    status: str
    run_id: str | None = None
    run_dir: str | None = None
    error: str | None = None
    seconds: float = 0.0
    taken: bool = False  # completed by another process; this one only read the result


OnOutcome = Callable[[CellOutcome], None]


class Executor(Protocol):
    """Optional beside `run`: `default_threads()` (a new sweep's per-cell thread count) and
    `prepare()` (called when a sweep starts, before it is planned: start workers early)."""

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        """Run every task, calling `on_outcome` (in this process) as each ends."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Each worker's share of the CPU cores (at least one thread)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


def default_threads(executor: object) -> int:
    """The per-cell thread count a new sweep on `executor` gets: its own choice, else all
    cores (one cell at a time)."""
    choose = getattr(executor, "default_threads", None)
    return int(choose()) if callable(choose) else threads_per_worker(1)


# ---------------------------------------------------------------------------- one cell

# Set in pool workers: once SIGINT arrived (or a run was interrupted), later tasks do not start.
_in_pool_worker = False
_stop_requested = False


def on_sigint(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def _replay_stop(ctx: object) -> None:
    """A SIGINT that came during set-up is replayed once the loop's own handler is in place."""
    if _stop_requested:
        os.kill(os.getpid(), signal.SIGINT)


def _mid_cell_fault(ctx: object) -> None:
    fault_point("sweep_worker_mid_cell")


def _busy(task: CellTask) -> CellOutcome:
    return CellOutcome(task.index, "busy")


def run_cell(task: CellTask) -> CellOutcome:
    """Train, resume or take the result of one cell, under its config lock; never raises."""
    global _stop_requested
    start = time.monotonic()
    if _stop_requested:
        return CellOutcome(task.index, "todo")
    if task.worker is not None:
        return _run_named_worker(task, start)

    from fsmrun.base.hashing import config_hash
    from fsmrun.schemas.config import ExperimentConfig

    exp = ExperimentConfig.model_validate_json(task.config_json)
    chash = task.config_hash or config_hash(exp)
    root = Path(task.results_root)
    here = task.coordinator_host in (None, socket.gethostname())
    watch = _watch_coordinator(task.coordinator_pid if here else None)
    mask = _unblock_sigint() if watch is not None else None
    # outside a pool worker (which set this up for good): a SIGINT before the run's own
    # handler is in place only marks the stop, replayed when the loop starts (_replay_stop)
    deferred = mask is not None and not _in_pool_worker
    handler = signal.signal(signal.SIGINT, on_sigint) if deferred else None
    try:
        with config_lock(root, exp.name, chash) as mine:
            if not mine:
                return _busy(task)
            state = cell_state(root, exp.name, chash)
            if state.status == "done":
                return CellOutcome(
                    task.index, "completed", state.run_id, str(state.folder), taken=True
                )
            if state.status == "running":  # a plain `fsmrun train` of this config, or a dying one
                return _busy(task)
            # an interrupted run continues in its own folder, even one killed before last.pt
            resume = state.folder if state.status == "interrupted" else None
            return _train(task, exp, resume, start)
    finally:
        if watch is not None:
            watch.set()
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
            _stop_requested = False  # a Ray worker serves later tasks, of other sweeps too


def _unblock_sigint() -> set[signal.Signals] | None:
    """Let SIGINT in for this cell (returns the mask to restore). Ray starts its workers with
    SIGINT blocked, which would leave the coordinator watchdog's SIGINT pending for ever."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # the run's own SIGINT handler needs the main thread anyway
    return signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _train(task: CellTask, exp: object, resume: Path | None, start: float) -> CellOutcome:
    global _stop_requested
    import torch

    from fsmrun.train.hooks import Hooks
    from fsmrun.train.loop import resume_run, train_one_experiment

    saved_threads = torch.get_num_threads()
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    hooks = Hooks()
    hooks.add("on_epoch_start", _replay_stop)
    hooks.add("on_epoch_end", _mid_cell_fault)
    common = dict(
        device=task.device,
        results_root=task.results_root,
        hooks=hooks,
        command=task.command or None,
        progress=False,
        index=False,
    )
    try:
        if resume is not None:
            result = resume_run(resume, **common)  # with the run's own thread count
        else:
            result = train_one_experiment(exp, **common)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        _stop_requested = _in_pool_worker
        return CellOutcome(task.index, "interrupted", seconds=time.monotonic() - start)
    except Exception as err:  # a failing cell never stops the others
        return CellOutcome(
            task.index,
            "failed",
            error=f"{type(err).__name__}: {err}",
            seconds=time.monotonic() - start,
        )
    finally:
        if saved_threads is not None:
            import torch

            torch.set_num_threads(saved_threads)
    if result.status == "interrupted":
        _stop_requested = _in_pool_worker
    return CellOutcome(
        task.index,
        result.status,
        result.run_id,
        str(result.run_dir),
        None,
        time.monotonic() - start,
    )


def _run_named_worker(task: CellTask, start: float) -> CellOutcome:
    """Call the task's `worker` ("module:function"); an exception is the cell's failure."""
    import importlib

    module, _, name = (task.worker or "").partition(":")
    saved_threads = None  # the serial executor runs in the caller's process: restore its count
    try:
        if task.threads is not None:
            import torch

            saved_threads = torch.get_num_threads()
            torch.set_num_threads(task.threads)
        return getattr(importlib.import_module(module), name)(task)
    except KeyboardInterrupt:
        return CellOutcome(task.index, "interrupted", seconds=time.monotonic() - start)
    except Exception as err:
        return CellOutcome(
            task.index,
            "failed",
            error=f"{type(err).__name__}: {err}",
            seconds=time.monotonic() - start,
        )
    finally:
        if saved_threads is not None:
            import torch

            torch.set_num_threads(saved_threads)


# ---------------------------------------------------------------------------- orphans


def coordinator_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _watch_coordinator(pid: int | None) -> threading.Event | None:
    """A daemon thread that stops this process cleanly once the coordinator `pid` is gone
    (SIGINT: the run saves last.pt and is marked interrupted), aborts it if it does not stop
    and exits. Only where the coordinator runs on this host and is not this process."""
    if pid is None or pid == os.getpid():
        return None
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCH_INTERVAL_S):
            if not coordinator_alive(pid):
                stop_orphan(done)
                return

    threading.Thread(target=watch, name="fsmrun-coordinator-watch", daemon=True).start()
    return done


def stop_orphan(done: threading.Event) -> None:
    """The coordinator is gone: stop the run at its next step, abort it if that hangs, exit."""
    for _ in range(2):
        os.kill(os.getpid(), signal.SIGINT)
        if done.wait(ORPHAN_GRACE_S):
            break
    if not _in_pool_worker:  # a Ray worker: its task ends, the worker is Ray's to stop
        return
    done.wait(ORPHAN_GRACE_S)
    os._exit(1)


# ---------------------------------------------------------------------------- executors


class SerialExecutor:
    """Cells one after another in this process (what `--workers 1` uses)."""

    def default_threads(self) -> int:
        return threads_per_worker(1)

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        for task in tasks:
            outcome = run_cell(task)
            on_outcome(outcome)
            if outcome.status == "interrupted":  # Ctrl-C reached the loop: stop the sweep
                raise KeyboardInterrupt


def with_changes(task: CellTask, **changes: object) -> CellTask:
    return CellTask(**{**task.__dict__, **changes})


class RayExecutor:
    """Cells as Ray tasks of `cpus_per_task` CPUs, on the cluster at `address` or a local one.

    Tasks are submitted lazily: at most `max_in_flight` at a time (default: twice the tasks
    the cluster's CPUs run at once), the next one as each ends, so a sweep of tens of
    thousands of cells holds a bounded number of task objects in Ray and in the driver.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_task: int = 1,
        max_in_flight: int | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_task = max(1, cpus_per_task)
        self.max_in_flight = max_in_flight

    def default_threads(self) -> int:
        return self.cpus_per_task

    def run(self, tasks: Iterable[CellTask], on_outcome: OnOutcome) -> None:
        queue = iter(tasks)
        first = next(queue, None)
        if first is None:
            return
        try:
            import ray
        except ModuleNotFoundError:
            from fsmrun.base.errors import UserError

            raise UserError("--backend ray needs Ray: pip install 'fsmrun[ray]'") from None
        started = not ray.is_initialized()
        if started:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=self.num_cpus or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                )
        remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(run_cell)
        limit = self.max_in_flight or max(
            1, 2 * int(ray.cluster_resources().get("CPU", 1)) // self.cpus_per_task
        )
        queue = itertools.chain([first], queue)
        refs: dict[object, CellTask] = {}

        def submit_more() -> None:
            for task in itertools.islice(queue, max(0, limit - len(refs))):
                changes: dict[str, object] = {
                    "coordinator_pid": os.getpid(),
                    "coordinator_host": socket.gethostname(),
                }
                if task.threads is None:
                    changes["threads"] = self.cpus_per_task
                refs[remote.remote(with_changes(task, **changes))] = task

        submit_more()
        try:
            self._drain(ray, refs, on_outcome, submit_more)
        except KeyboardInterrupt:  # the cells not yet submitted stay to do
            for ref in refs:
                ray.cancel(ref)
            self._drain(ray, refs, on_outcome)
            raise
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _drain(
        ray: object,
        refs: dict[object, CellTask],
        on_outcome: OnOutcome,
        submit_more: Callable[[], None] | None = None,
    ) -> None:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)  # type: ignore[attr-defined]
            task = refs.pop(done[0])
            try:
                outcome = ray.get(done[0])  # type: ignore[attr-defined]
            except Exception as err:  # cancelled, or the worker died: resumable either way
                outcome = CellOutcome(
                    task.index, "interrupted", error=f"{type(err).__name__}: {err}"
                )
            on_outcome(outcome)
            if submit_more is not None:
                submit_more()
