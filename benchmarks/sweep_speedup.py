"""Speed-up of a sweep of 8 small cells on 2 workers over the same cells one after another.

Sequential: one process, torch's default threads. Pool: 2 spawned workers, threads divided.
Prints both wall times and the ratio (target: >= 1.8 on a 2-core machine).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps.coordinator import run_sweep
from fsmrun.sweeps.executors import LocalExecutor, SerialExecutor, threads_per_worker

SPEC = SweepSpec(
    name="bench",
    experiments=["parity"],
    seeds=[0, 1, 2, 3],
    grid={"model.arch": ["transformer", "lstm"]},
    set={
        "data.n_train": 1000,
        "data.n_val": 200,
        "data.n_test": 200,
        "data.n_test_ood": 200,
        "model.d_model": 32,
        "model.n_layers": 2,
        "model.n_heads": 2,
        "model.d_ff": 64,
        "train.epochs": 8,
        "train.patience": None,
    },
)


def timed(executor: object) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        result = run_sweep(SPEC, executor, results_root=Path(root))  # type: ignore[arg-type]
        assert result.record.counts["done"] == 8, result.record.counts
        return time.perf_counter() - start


def main() -> None:
    load = os.getloadavg()[0]
    sequential = timed(SerialExecutor())
    pooled = timed(LocalExecutor(2))
    print(f"cores {os.cpu_count()}, load average before {load:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"8 cells one after another (torch threads {torch.get_num_threads()}): {sequential:.1f}s")
    print(f"8 cells on 2 workers (threads {threads_per_worker(2)} each): {pooled:.1f}s")
    print(f"speed-up: {sequential / pooled:.2f}x (target >= 1.8)")


if __name__ == "__main__":
    main()
