"""What the run index knows, asked for in pieces (SQL on the folder index): the mtimes and
listings of a batch of experiments for a freshness check, the rows under a folder, the
helpers of `report`'s newest-run-per-config query, and the forked child process that shares
a check (`Forked`)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from fsmrun.runs.index_scan import Changes, Known, Share, find_changes, find_new_runs

log = logging.getLogger(__name__)


def known_loader(conn: sqlite3.Connection, *, full: bool) -> Callable[[list[str], str, str], Known]:
    """What the index knows of the experiments `names` and the run folders in [lo, hi): rows
    recorded running, the listings of those experiment folders and of their hash folders
    (`full`: with the hash folders' children and every run folder's mtime; else only the
    hash folders' mtimes, all the newest page compares)."""
    running_sql = "SELECT folder FROM runs WHERE status = 'running' AND folder >= ? AND folder < ?"
    runs_sql = "SELECT folder, folder_mtime_ns FROM runs WHERE folder >= ? AND folder < ?"
    children = "children" if full else "CASE WHEN instr(path, '/') = 0 THEN children END"
    dirs_sql = (
        f"SELECT path, mtime_ns, {children} FROM dirs WHERE (path >= ? AND path < ?) "
        "OR path IN (SELECT value FROM json_each(?))"
    )

    def load(names: list[str], lo: str, hi: str) -> Known:
        dirs = conn.execute(dirs_sql, (lo, hi, json.dumps(names)))
        return Known(
            runs=dict(conn.execute(runs_sql, (lo, hi))) if full else {},
            running={f for (f,) in conn.execute(running_sql, (lo, hi))},
            dirs={row[0]: row for row in dirs},  # the rows as they come: (path, mtime, children)
        )

    return load


def rows_under(conn: sqlite3.Connection) -> Callable[[str], dict[str, int | None]]:
    """The indexed (folder, mtime) of the runs under a folder prefix (the covering index on
    folder answers a range)."""

    def rows(prefix: str) -> dict[str, int | None]:
        sql = "SELECT folder, folder_mtime_ns FROM runs WHERE folder >= ? AND folder < ?"
        return dict(conn.execute(sql, (prefix + "/", prefix + "0")))  # '0' follows '/'

    return rows


def keep_newest(
    newest: dict[str, tuple[float, str, Any]], key: str, updated: float, run_id: str, item: Any
) -> None:
    held = newest.get(key)
    if held is None or (updated, run_id) > (held[0], held[1]):
        newest[key] = (updated, run_id, item)


def can_fork() -> bool:
    """Whether a second process can take work here: a second core and fork (no re-import)."""
    return (os.cpu_count() or 1) >= 2 and "fork" in multiprocessing.get_all_start_methods()


class Forked:
    """A forked child process (it starts at once, with this process's memory) that runs
    `tasks`, (function, arguments) each, in order and sends each answer through a pipe;
    `take` receives them in the same order. Daemonic: it ends with this process."""

    def __init__(self, tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]], name: str) -> None:
        context = multiprocessing.get_context("fork")
        self.answers, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_run_tasks, args=(send, tasks, self.answers), name=name, daemon=True
        )
        self.process.start()
        send.close()

    def take(self) -> Any | None:
        """The next answer; None (logged) if its task failed: the caller does it itself."""
        try:
            ok, answer = self.answers.recv()
        except (EOFError, OSError) as exc:
            ok, answer = False, exc
        if not ok:
            log.debug("%s: a task failed in the child process: %s", self.process.name, answer)
            return None
        return answer

    def close(self) -> None:
        self.answers.close()
        self.process.join()


def _run_tasks(
    send: Connection,
    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    parents_end: Connection,
) -> None:
    """In the child: (True, answer) or (False, why it failed) of each task, in order. An
    answer is written by a thread while the next task runs: the parent reads it when it
    needs it, and a report's fields (more than a pipe holds) kept the child from its part
    of the check for 0.15 s. Ctrl-C reaches the whole process group: the parent handles it
    (and ends this daemonic child as it exits), so here it is ignored rather than printed
    as a traceback. The reading end inherited with the fork is closed here: a write fails
    once the parent's is closed (the parent gone) instead of waiting for a reader."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parents_end.close()
    writer = _Writer(send)
    try:
        for task, args in tasks:
            try:
                answer: tuple[bool, Any] = (True, task(*args))
            except Exception as exc:  # noqa: BLE001 - any failure: the parent does it instead
                answer = (False, f"{type(exc).__name__}: {exc}")
            try:
                data = ForkingPickler.dumps(answer)
            except Exception as exc:  # noqa: BLE001 - an answer that cannot be sent
                data = ForkingPickler.dumps((False, f"{type(exc).__name__}: {exc}"))
            if not writer.put(data):
                break  # the parent is gone (its end of the pipe closed): nobody to answer
    finally:
        writer.close()


class _Writer:
    """Writes the child's encoded answers to the pipe in order, on a thread of its own."""

    def __init__(self, send: Connection) -> None:
        self.send = send
        self.pending: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self.failed = False
        self.thread = threading.Thread(target=self._write, name="answers", daemon=True)
        self.thread.start()

    def put(self, data: memoryview) -> bool:
        """Queue `data` (an answer as ForkingPickler encodes it); False once a write failed."""
        self.pending.put(data)
        return not self.failed

    def close(self) -> None:
        """Write what is queued, then close the pipe."""
        self.pending.put(None)
        self.thread.join()
        self.send.close()

    def _write(self) -> None:
        while (data := self.pending.get()) is not None:
            if self.failed:
                continue
            try:
                self.send.send_bytes(data)
            except OSError:
                self.failed = True


def changes_by_uri(
    root: str, uri: str, experiment: str | None, share: Share | None = None
) -> Changes:
    """`find_changes` of the folders under `root` against the index at `uri`, opened here
    (a report's child process runs it while its parent aggregates; `share`: its part)."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        return find_changes(root, experiment, known_loader(conn, full=True), share)
    finally:
        conn.close()


def new_runs_by_uri(root: str, uri: str, experiment: str | None, share: Share) -> Changes:
    """`find_new_runs` of this process's part (`share`) of the folders under `root` against
    the index at `uri`, opened here (in a child process, beside its parent)."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        return find_new_runs(root, experiment, known_loader(conn, full=False), rows_under(conn),
                             share)  # fmt: skip
    finally:
        conn.close()
