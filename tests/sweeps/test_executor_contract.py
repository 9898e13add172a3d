"""One contract for every executor (in process, a process pool, Ray): a failing cell leaves the
others alone, a second run starts nothing, a failed cell is retried only when asked (into a new
version), and a cell's run is bit-identical to the same config trained directly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_same_tensors

from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps.coordinator import run_sweep
from fsmrun.sweeps.executors import Executor, RayExecutor, SerialExecutor
from fsmrun.sweeps.pool import LocalExecutor
from fsmrun.sweeps.spec import expand
from fsmrun.train.checkpoint import KEY_MODEL, read_ckpt
from fsmrun.train.history import read_history
from fsmrun.train.loop import train_one_experiment

GOOD_LR, BAD_LR = 0.01, 1e30  # 1e30: the loss is not finite, the cell fails


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module (the executor then neither starts nor stops it)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(params=["serial", "pool", "ray"])
def executor(request) -> Executor:
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
        return RayExecutor(num_cpus=2, cpus_per_task=1)
    return SerialExecutor() if request.param == "serial" else LocalExecutor(2)


def spec_of(tiny: str) -> SweepSpec:
    return SweepSpec(name="c", experiments=[tiny], seeds=[0], grid={"train.lr": [GOOD_LR, BAD_LR]})


def weights_and_history(run_dir: Path) -> tuple[dict, list[dict]]:
    weights = read_ckpt(run_dir / "checkpoints" / "last.pt")[1][KEY_MODEL]
    history = [
        r.model_dump(exclude={"time", "steps_per_s"})
        for r in read_history(run_dir / "logs" / "history.jsonl")
    ]
    return weights, history


def test_executor_contract(executor, tiny, tmp_path):
    spec, root = spec_of(tiny), tmp_path / "results"

    # failure isolation: the diverging cell fails, the other completes
    first = run_sweep(spec, executor, results_root=root, device="cpu")
    good, bad = first.record.cells
    assert (first.started, first.skipped) == (2, 0)
    assert (good.status, bad.status) == ("done", "failed")
    assert bad.error.startswith("non-finite training statistics")

    # identical bits: the cell's run is the config trained directly, in this process, at the
    # torch thread count the sweep fixed for its cells (CPU bits depend on it)
    config: ExperimentConfig = expand(spec)[0].config
    saved = torch.get_num_threads()
    torch.set_num_threads(first.record.threads)
    try:
        direct = train_one_experiment(config, device="cpu", results_root=tmp_path / "direct",
                                      progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(saved)
    swept_weights, swept_history = weights_and_history(root.joinpath(*_run_path(good.run_id)))
    direct_weights, direct_history = weights_and_history(direct.run_dir)
    assert_same_tensors(swept_weights, direct_weights)
    assert len(swept_history) == 7 and swept_history == direct_history  # 4 train, 2 eval, stop

    # idempotence: nothing starts again, failed cells included
    again = run_sweep(spec, executor, results_root=root, device="cpu")
    assert (again.started, again.skipped) == (0, 2)
    assert [c.run_id for c in again.record.cells] == [good.run_id, bad.run_id]

    # retry: only when asked, only the failed cell, into a new version
    retried = run_sweep(spec, executor, results_root=root, device="cpu", retry_failed=True)
    assert (retried.started, retried.skipped) == (1, 1)
    assert retried.record.cells[0].run_id == good.run_id
    assert retried.record.cells[1].run_id == bad.run_id.removesuffix("-v1") + "-v2"
    assert retried.record.cells[1].status == "failed"


def _run_path(run_id: str) -> tuple[str, str, str]:
    """'tiny-<hash12>-v1' -> ('tiny', '<hash12>', 'v1'), its folder under the results root."""
    experiment, chash, version = run_id.rsplit("-", 2)
    return experiment, chash, version
