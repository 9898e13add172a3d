"""Where sweep cells run: in this process, on a local process pool, or as Ray tasks.

Workers write run folders only (never the SQLite index); each is limited to its share of
CPU threads. `run(tasks, on_outcome)` calls `on_outcome` in the coordinator as cells finish.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class CellTask:
    """One cell to run: train `config_json` afresh, or resume the run in `resume_dir`."""

    index: int
    config_json: str
    results_root: str
    device: str = "cpu"
    resume_dir: str | None = None
    command: list[str] = field(default_factory=list)
    threads: int | None = None  # torch threads in the worker (None: leave the default)


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended: completed, failed, interrupted, or todo (never started)."""

    index: int
    status: str
    run_id: str | None = None
    run_dir: str | None = None
    error: str | None = None
    seconds: float = 0.0


OnOutcome = Callable[[CellOutcome], None]


class Executor(Protocol):
    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        """Run every task, calling `on_outcome` (in this process) as each ends."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Each worker's share of the CPU cores (at least one thread)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, workers))


# ---------------------------------------------------------------------------- the worker

# Pool workers only: once SIGINT arrived (or a run was interrupted), later tasks do not start.
_in_pool_worker = False
_stop_requested = False


def _on_sigint(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def _init_pool_worker(threads: int) -> None:
    """Pool worker set-up, before torch is imported: thread limits, own process group, SIGINT."""
    global _in_pool_worker
    _in_pool_worker = True
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # a terminal's Ctrl-C reaches the coordinator only; it forwards one SIGINT
    signal.signal(signal.SIGINT, _on_sigint)


def _replay_stop(ctx: object) -> None:
    """A SIGINT that came during set-up is replayed once the loop's own handler is in place."""
    if _stop_requested:
        os.kill(os.getpid(), signal.SIGINT)


def run_cell(task: CellTask) -> CellOutcome:
    """Train or resume one cell into its run folder (index untouched); never raises."""
    global _stop_requested
    start = time.monotonic()
    if _stop_requested:
        return CellOutcome(task.index, "todo")
    import torch

    from fsmrun.schemas.config import ExperimentConfig
    from fsmrun.train.hooks import Hooks
    from fsmrun.train.loop import resume_run, train_one_experiment

    if task.threads is not None:
        torch.set_num_threads(task.threads)
    hooks = Hooks()
    hooks.add("on_epoch_start", _replay_stop)
    common = dict(
        device=task.device,
        results_root=task.results_root,
        hooks=hooks,
        command=task.command or None,
        progress=False,
        index=False,
    )
    try:
        if task.resume_dir is not None:
            result = resume_run(task.resume_dir, **common)
        else:
            exp = ExperimentConfig.model_validate_json(task.config_json)
            result = train_one_experiment(exp, **common)
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


# ---------------------------------------------------------------------------- executors


class SerialExecutor:
    """Cells one after another in this process (what `--workers 1` uses)."""

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        for task in tasks:
            outcome = run_cell(task)
            on_outcome(outcome)
            if outcome.status == "interrupted":  # Ctrl-C reached the loop: stop the sweep
                raise KeyboardInterrupt


class LocalExecutor:
    """A pool of `workers` spawned processes, each with `threads` torch threads."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.workers = max(1, workers)
        self.threads = threads

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        if not tasks:
            return
        workers = min(self.workers, len(tasks))
        threads = self.threads or threads_per_worker(workers)
        tasks = [_with_threads(t, threads) for t in tasks]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_pool_worker, initargs=(threads,)
        ) as pool:
            with _thread_env(threads):  # workers start on submit and inherit the limits
                pending = {pool.submit(run_cell, t): t for t in tasks}
            try:
                _drain(pending, on_outcome)
            except KeyboardInterrupt:
                for future in pending:
                    future.cancel()
                _interrupt_children()
                try:
                    _drain(pending, on_outcome)
                except KeyboardInterrupt:  # a second Ctrl-C: abort the runs (still resumable)
                    _interrupt_children()
                    _drain(pending, on_outcome)
                raise


def _drain(pending: dict[Future[CellOutcome], CellTask], on_outcome: OnOutcome) -> None:
    """Hand finished futures to `on_outcome` until none is left (removing them)."""
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            task = pending.pop(future)
            if future.cancelled():
                continue
            try:
                outcome = future.result()
            except Exception as err:  # the worker process died (killed, out of memory)
                outcome = CellOutcome(task.index, "failed", error=f"worker died: {err}")
            on_outcome(outcome)


@contextmanager
def _thread_env(threads: int) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in THREAD_ENV_VARS}
    os.environ.update({name: str(threads) for name in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _interrupt_children() -> None:
    for child in multiprocessing.active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGINT)


def _with_threads(task: CellTask, threads: int) -> CellTask:
    return CellTask(**{**task.__dict__, "threads": threads})


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
                refs[remote.remote(_with_threads(task, self.cpus_per_task))] = task

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
            except Exception as err:  # cancelled, or the worker died
                name = type(err).__name__
                status = "interrupted" if "Cancel" in name else "failed"
                outcome = CellOutcome(task.index, status, error=f"{name}: {err}")
            on_outcome(outcome)
            if submit_more is not None:
                submit_more()
