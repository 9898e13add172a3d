"""A small pool of long-lived worker processes for sweep cells, built to survive its workers.

Unlike concurrent.futures' pool (which breaks wholesale when one worker dies), a dead worker
here costs only the cell it held: that cell comes back `interrupted` (its run stays resumable)
and a fresh worker takes its place. Workers are forked from a forkserver that imported fsmrun
and torch once, so each starts warm. Each worker runs in its own process group (a terminal's
Ctrl-C reaches the coordinator only, which forwards one SIGINT) and watches the coordinator:
when it is gone, however it died, the worker stops its run cleanly and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from fsmrun.base.errors import EnvironmentFailure
from fsmrun.sweeps.executors import (
    CellOutcome,
    CellTask,
    OnOutcome,
    threads_per_worker,
    with_changes,
)

SHUTDOWN_S = 10.0  # how long stopped workers get to exit before they are killed
PRELOAD = ["fsmrun.sweeps.worker"]  # imports torch and the training loop


def _context() -> Any:
    """forkserver where the platform has it (warm, fork-safe); spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not Linux/macOS


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: CellTask | None = None


class WorkerPool:
    """`workers` processes running cells with `threads` torch threads each."""

    def __init__(self, workers: int, threads: int) -> None:
        self.size = max(1, workers)
        self.threads = threads
        self.context = _context()
        self.workers: list[_Worker] = []
        self.starts = 0
        self.unreported: deque[CellOutcome] = deque()  # received, not yet handed on

    def _start(self, limit: int) -> _Worker:
        self.starts += 1
        if self.starts > limit:  # workers die before taking a task: something is broken here
            raise EnvironmentFailure("sweep workers keep dying on start; see the messages above")
        from fsmrun.sweeps.worker import serve

        ours, theirs = self.context.Pipe()
        # the worker sets its own thread limits (`serve`); this process's environment is left
        # alone, so processes it starts later keep their default thread count
        process = self.context.Process(
            target=serve, args=(theirs, self.threads, os.getpid()), daemon=True
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self.workers.append(worker)
        return worker

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        """Run every task; on Ctrl-C stop the workers' runs (one SIGINT each; a second Ctrl-C
        aborts them), hand back what they report and re-raise. Workers are gone on return."""
        queue = deque(tasks)
        limit = len(tasks) + 2 * self.size
        try:
            for _ in range(min(self.size, len(tasks))):
                self._start(limit)
            try:
                self._loop(queue, on_outcome, limit)
            except KeyboardInterrupt:
                queue.clear()
                self._signal_busy()
                try:
                    self._loop(queue, on_outcome, limit)
                except KeyboardInterrupt:  # a second Ctrl-C: abort the runs (still resumable)
                    self._signal_busy()
                    self._loop(queue, on_outcome, limit)
                raise
        finally:
            self._shutdown()

    def _loop(self, queue: deque[CellTask], on_outcome: OnOutcome, limit: int) -> None:
        while self.unreported or queue or any(w.task is not None for w in self.workers):
            self._report(on_outcome)
            self._dispatch(queue)
            if not any(w.task is not None for w in self.workers):
                continue
            watched = [w.conn for w in self.workers if w.task is not None]
            watched += [w.process.sentinel for w in self.workers]
            ready = set(wait(watched))
            for worker in list(self.workers):
                outcome = self._receive(worker) if worker.conn in ready else None
                if outcome is not None:
                    worker.task = None
                    self.unreported.append(outcome)
                    continue
                dead = worker.process.sentinel in ready or worker.conn in ready
                if dead or not worker.process.is_alive():  # its pipe closed: it is going
                    worker.process.join(SHUTDOWN_S)
                    self._bury(worker)
                    if queue:
                        self._start(limit)
            # the next cells start before results are recorded (index, sweep.json): a worker
            # never waits for the coordinator's bookkeeping
            self._dispatch(queue)

    def _dispatch(self, queue: deque[CellTask]) -> None:
        for worker in self.workers:
            if worker.task is None and queue:
                worker.task = queue.popleft()
                with contextlib.suppress(OSError):  # it died: its sentinel says so
                    worker.conn.send(worker.task)

    def _report(self, on_outcome: OnOutcome) -> None:
        """Hand received outcomes to `on_outcome`; one taken off before its call, so a Ctrl-C
        during a call neither repeats nor loses one (the rest wait for the next `_loop`)."""
        while self.unreported:
            on_outcome(self.unreported.popleft())

    @staticmethod
    def _receive(worker: _Worker) -> CellOutcome | None:
        try:
            return worker.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return None

    def _bury(self, worker: _Worker) -> None:
        """A worker died (killed, out of memory): its cell is interrupted, not failed."""
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(1.0)
        self.workers.remove(worker)
        worker.conn.close()
        if worker.task is not None:
            code = worker.process.exitcode
            self.unreported.append(
                CellOutcome(
                    worker.task.index,
                    "interrupted",
                    error=f"worker died (exit code {code}); the same command resumes it",
                )
            )

    def _signal_busy(self) -> None:
        for worker in self.workers:
            if worker.task is not None and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGINT)

    def _shutdown(self) -> None:
        self._signal_busy()  # left by an error in the coordinator: stop their runs cleanly
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)  # a busy worker has been told to stop, or has stopped
        for worker in self.workers:
            worker.process.join(SHUTDOWN_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
        self.workers.clear()


class LocalExecutor:
    """A pool of `workers` warm processes (forked from a server that imported fsmrun and torch
    once); a worker that dies costs only its cell and is replaced."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.workers = max(1, workers)
        self.threads = threads

    def default_threads(self) -> int:
        return self.threads or threads_per_worker(self.workers)

    def prepare(self) -> None:
        """Start the forkserver now: it imports torch while the coordinator plans the sweep
        (expands, locks, reads the registry), instead of before the first cell."""
        context = _context()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        if not tasks:
            return
        threads = self.default_threads()
        tasks = [t if t.threads else with_changes(t, threads=threads) for t in tasks]
        WorkerPool(min(self.workers, len(tasks)), threads).run(tasks, on_outcome)
