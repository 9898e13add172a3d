"""Sweeps you can publish from: the same bits however a cell ran (first pass, re-run after a
dead worker, serial or pool, at the sweep's fixed thread count), a dead worker costing only its
cell, a config trained by one process at a time, and a cell killed before its first checkpoint
restarting in its own folder."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from fsmrun.analysis.audit import final_state_dict
from fsmrun.base.hashing import config_hash
from fsmrun.runs.layout import claim_run_folder
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import Metrics
from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps.cells import config_lock
from fsmrun.sweeps.coordinator import read_record, run_sweep
from fsmrun.sweeps.executors import SerialExecutor
from fsmrun.sweeps.pool import LocalExecutor
from fsmrun.sweeps.spec import SweepError, expand
from fsmrun.train.loop import resume_run, train_one_experiment
from fsmrun.train.session import Plan, SessionControls, new_record


def _reference(config, root: Path, threads: int):
    """`fsmrun train` of `config` at `threads` torch threads (OMP_NUM_THREADS=threads)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train_one_experiment(config, device="cpu", results_root=root, progress=False)
    finally:
        torch.set_num_threads(saved)


def _same_bits(a: Path, b: Path) -> bool:
    wa, wb = final_state_dict(a), final_state_dict(b)
    if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
        return False
    ma = Metrics.model_validate_json((a / "metrics.json").read_text())
    mb = Metrics.model_validate_json((b / "metrics.json").read_text())
    return ma.best == mb.best and ma.last == mb.last and ma.steps == mb.steps


def _folders(root: Path, spec: SweepSpec) -> list[Path]:
    record = read_record(next((root / "sweeps").glob("*/sweep.json")))
    assert [c.status for c in record.cells] == ["done"] * len(record.cells), record.counts
    return [_folder_of(root, c.run_id) for c in record.cells]


def _folder_of(root: Path, run_id: str) -> Path:
    name, chash, version = run_id.rsplit("-", 2)
    return root / name / chash / version


@pytest.mark.slow
def test_pool_serial_and_a_dead_worker_give_the_bits_of_plain_train(tiny, tmp_path):
    # cell 0 trains long enough to be killed mid-run; cell 1 is an ordinary cell
    spec = SweepSpec(
        name="t",
        experiments=[tiny],
        seeds=[0],
        cases=[{"train.epochs": 30, "train.patience": None}, {"train.epochs": 2}],
    )
    cells = expand(spec)
    refs = [_reference(c.config, tmp_path / "ref", threads=1).run_dir for c in cells]

    # serial, threads fixed at 1 (this process has more): bit-identical, recorded in sweep.json
    serial = run_sweep(spec, SerialExecutor(), results_root=tmp_path / "s", threads=1)
    assert serial.record.threads == 1
    assert all(_same_bits(f, r) for f, r in zip(_folders(tmp_path / "s", spec), refs, strict=True))
    with pytest.raises(SweepError, match="trains every cell with 1 thread"):
        run_sweep(spec, SerialExecutor(), results_root=tmp_path / "s", threads=2)

    # pool of 2: the worker of cell 0 is killed (kill -9) mid-run; only that cell suffers
    root = tmp_path / "p"
    killed: list[int] = []

    def kill_cell_0() -> None:
        folder = RunFolder(root / "tiny" / cells[0].config_hash[:12] / "v1")
        for _ in range(1200):
            # a few steps logged (history.jsonl) after the step-0 last.pt: mid-run
            logged = folder.history.read_text().count("\n") if folder.history.is_file() else 0
            if folder.has_checkpoint("last") and logged >= 5:
                pid = json.loads(folder.run_json.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_cell_0)
    killer.start()
    first = run_sweep(spec, LocalExecutor(2), results_root=root, threads=1)
    killer.join()
    assert killed, "cell 0 never ran long enough to be killed"
    assert [c.status for c in first.record.cells] == ["interrupted", "done"]
    assert first.record.counts["failed"] == 0

    # the same command again resumes it in its own folder (no --retry-failed), same bits
    again = run_sweep(spec, LocalExecutor(2), results_root=root)
    assert (again.started, again.skipped) == (1, 1) and again.record.threads == 1
    assert again.record.cells[0].run_id.endswith("-v1")
    assert all(_same_bits(f, r) for f, r in zip(_folders(root, spec), refs, strict=True))


def test_resume_continues_with_the_thread_count_the_run_trained_with(tiny, tmp_path):
    config = expand(SweepSpec(name="t", experiments=[tiny]))[0].config
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        stopped = train_one_experiment(
            config, device="cpu", results_root=tmp_path, stop_at_step=2, progress=False
        )
        assert RunFolder(stopped.run_dir).read_env().threads == 1
        torch.set_num_threads(3)
        resume_run(stopped.run_dir, device="cpu", progress=False)
        assert torch.get_num_threads() == 1  # pinned to the run's count before training
    finally:
        torch.set_num_threads(saved)


def test_a_cell_killed_before_its_first_checkpoint_restarts_in_its_folder(tiny, tmp_path):
    spec = SweepSpec(name="t", experiments=[tiny])
    cell = expand(spec)[0]
    root = tmp_path / "r"

    def make_files(folder: RunFolder, version: int) -> None:
        plan = Plan(cell.config, cell.config_hash, torch.device("cpu"), None, SessionControls())
        folder.write_record(new_record(plan, version))
        folder.write_config(cell.config)

    folder = claim_run_folder(root, "tiny", cell.config_hash, make_files)
    folder.release_lock()  # the process "died": run.json says running, nobody holds the lock
    assert not folder.has_checkpoint("last")
    result = run_sweep(spec, SerialExecutor(), results_root=root)
    assert [c.run_id for c in result.record.cells] == [f"tiny-{cell.config_hash[:12]}-v1"]
    assert result.record.counts["done"] == 1
    assert sorted(p.name for p in folder.path.parent.iterdir() if p.name.startswith("v")) == ["v1"]


def test_a_config_another_process_trains_is_waited_for_and_its_result_taken(tiny, tmp_path):
    spec = SweepSpec(name="t", experiments=[tiny], seeds=[0, 1])
    cells = expand(spec)
    root = tmp_path / "r"
    taken = []

    def other_sweep() -> None:  # holds cell 0's lock, trains it, lets go
        with config_lock(root, "tiny", cells[0].config_hash) as mine:
            assert mine
            started.set()
            train_one_experiment(cells[0].config, device="cpu", results_root=root, progress=False)

    started = threading.Event()
    other = threading.Thread(target=other_sweep)
    other.start()
    started.wait(30)
    result = run_sweep(
        spec,
        SerialExecutor(),
        results_root=root,
        on_outcome=lambda row, outcome: taken.append((row.index, outcome.taken)),
    )
    other.join()
    assert result.record.counts["done"] == 2
    assert sorted(taken) == [(0, True), (1, False)]  # cell 0: the other's result, not retrained
    versions = [p.name for p in (root / "tiny" / cells[0].config_hash[:12]).iterdir()]
    assert sorted(v for v in versions if v.startswith("v")) == ["v1"]
    assert config_hash(cells[0].config) == cells[0].config_hash


@pytest.mark.slow
def test_a_ray_cell_has_the_bits_of_plain_train_at_the_sweep_thread_count(tiny, tmp_path):
    pytest.importorskip("ray")
    from fsmrun.sweeps.executors import RayExecutor

    spec = SweepSpec(name="t", experiments=[tiny], seeds=[0])
    reference = _reference(expand(spec)[0].config, tmp_path / "ref", threads=1).run_dir
    result = run_sweep(spec, RayExecutor(num_cpus=2, cpus_per_task=2), results_root=tmp_path / "r",
                       threads=1)  # fmt: skip
    assert result.record.threads == 1  # the sweep's count, not the task's CPU share
    (folder,) = _folders(tmp_path / "r", spec)
    assert RunFolder(folder).read_env().threads == 1
    assert _same_bits(folder, reference)
