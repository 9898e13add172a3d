"""The body of a local pool worker. Importing this module imports torch, the training loop and
what a cell imports lazily on first use, which is why the pool's forkserver preloads it: every
worker forked from it starts warm, its first cell as fast as its later ones."""

from __future__ import annotations

import os
import signal
from multiprocessing.connection import Connection

# Imported for their cost, once, in the forkserver. torch._inductor: set_seed's
# torch.use_deterministic_algorithms imports it (and sympy with it), over a second of CPU that
# each worker would otherwise pay in its first cell. numpy.random: the corpus sampler's.
import numpy.random  # noqa: F401
import torch
import torch._inductor  # noqa: F401

import fsmrun.train.loop  # noqa: F401  (imported for its cost, once, in the forkserver)
from fsmrun.sweeps import executors
from fsmrun.sweeps.executors import THREAD_ENV_VARS, run_cell


def serve(conn: Connection, threads: int, coordinator_pid: int) -> None:
    """Run the cells sent on `conn` until it sends None or closes (the coordinator is gone).

    Set-up first: the thread limits, an own process group (Ctrl-C in a terminal reaches the
    coordinator only; it forwards one SIGINT) and a SIGINT handler that lets the cell in hand
    stop cleanly and no later cell start."""
    executors._in_pool_worker = True
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    signal.signal(signal.SIGINT, executors.on_sigint)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if task.coordinator_pid is None:
            task = executors.CellTask(**{**task.__dict__, "coordinator_pid": coordinator_pid})
        outcome = run_cell(task)
        try:
            conn.send(outcome)
        except OSError:
            return
