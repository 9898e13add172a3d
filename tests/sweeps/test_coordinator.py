"""Sweeps: grid expansion, idempotent runs (skip, re-run, retry, resume), executors."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fsmrun.runs.index import RunIndex
from fsmrun.schemas.records import Metrics
from fsmrun.schemas.sweep import SweepRecord, SweepSpec
from fsmrun.sweeps.coordinator import (
    SweepBusy,
    read_record,
    refresh,
    run_sweep,
    sweep_id_for,
    sweep_lock,
)
from fsmrun.sweeps.executors import SerialExecutor, threads_per_worker
from fsmrun.sweeps.spec import SweepError, expand, inline_spec, load_spec, parse_seeds, spec_size
from fsmrun.train.loop import train_one_experiment


def spec_of(tiny: str, seeds=(0, 1), **extra) -> SweepSpec:
    return SweepSpec(name="t", experiments=[tiny], seeds=list(seeds), **extra)


def test_grid_expands_experiments_cases_grid_and_seeds(tiny):
    spec = spec_of(
        tiny,
        seeds=(0, 1, 2),
        cases=[{"model.arch": "lstm"}, {"model.arch": "transformer", "model.pos_encoding": "none"}],
        grid={"train.lr": [0.01, 0.001], "model.d_model": [8, 16]},
    )
    cells = expand(spec)
    assert len(cells) == spec_size(spec) == 2 * 2 * 2 * 3
    assert cells[0].overrides == {
        "model.arch": "lstm",
        "train.lr": 0.01,
        "model.d_model": 8,
        "seed": 0,
    }
    assert cells[-1].config.model.pos_encoding == "none" and cells[-1].config.seed == 2
    assert len({c.config_hash for c in cells}) == 24


def test_seed_ranges_and_bad_keys():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    with pytest.raises(SweepError):
        parse_seeds("a-b")
    with pytest.raises(SweepError, match="did you mean arch"):
        inline_spec(["parity"], {"model.arhc": ["lstm"]}, [0], {})


def test_builtin_suites_have_the_promised_sizes():
    assert spec_size(load_spec("tomita")) == 7 * 2 * 3
    assert spec_size(load_spec("deletang_regular")) == 4 * 6 * 3


def test_a_second_run_skips_every_done_cell_and_a_deleted_run_reruns_alone(tiny, tmp_path):
    root = tmp_path / "r"
    first = run_sweep(spec_of(tiny), SerialExecutor(), results_root=root)
    assert (first.started, first.skipped) == (2, 0)
    assert first.record.counts["done"] == 2
    SweepRecord.model_validate_json(first.path.read_text())  # schema-valid on disk
    second = run_sweep(spec_of(tiny), SerialExecutor(), results_root=root)
    assert (second.started, second.skipped) == (0, 2)
    shutil.rmtree(root / "tiny" / first.record.cells[1].config_hash[:12])
    assert refresh(root, read_record(first.path)).counts["todo"] == 1
    third = run_sweep(spec_of(tiny), SerialExecutor(), results_root=root)
    assert (third.started, third.skipped) == (1, 1)
    assert third.record.cells[0].run_id == first.record.cells[0].run_id


def test_a_failing_cell_leaves_the_others_and_is_retried_only_when_asked(tiny, tmp_path):
    root = tmp_path / "r"
    spec = spec_of(tiny, seeds=(0,), grid={"train.lr": [0.01, 1e30]})  # 1e30: loss not finite
    result = run_sweep(spec, SerialExecutor(), results_root=root)
    assert [c.status for c in result.record.cells] == ["done", "failed"]
    assert result.record.cells[1].error.startswith("non-finite training statistics")
    assert run_sweep(spec, SerialExecutor(), results_root=root).started == 0
    retried = run_sweep(spec, SerialExecutor(), results_root=root, retry_failed=True)
    assert retried.started == 1 and retried.record.cells[1].run_id.endswith("-v2")


def test_an_interrupted_cell_is_resumed_to_the_uninterrupted_metrics(tiny, tmp_path):
    spec = spec_of(tiny, seeds=(0,))
    cell = expand(spec)[0]
    root = tmp_path / "r"
    stopped = train_one_experiment(
        cell.config, device="cpu", results_root=root, stop_at_step=3, progress=False
    )
    assert stopped.status == "interrupted"
    assert read_record(run_sweep(spec, SerialExecutor(), results_root=root).path).counts == {
        "done": 1, "running": 0, "interrupted": 0, "failed": 0, "todo": 0
    }  # fmt: skip
    whole = train_one_experiment(
        cell.config, device="cpu", results_root=tmp_path / "other", progress=False
    )
    got = Metrics.model_validate_json((stopped.run_dir / "metrics.json").read_text())
    assert got.best == whole.metrics.best and got.last == whole.metrics.last
    assert got.steps == whole.metrics.steps


def test_pool_workers_divide_the_cores():
    assert threads_per_worker(2, cores=8) == 4 and threads_per_worker(16, cores=2) == 1


# Idempotence, retries, failure isolation and identical bits on the pool and on Ray:
# tests/sweeps/test_executor_contract.py.


def _indexed_run_ids(root: Path) -> list[str]:
    """Run ids stored in registry.sqlite itself (`rows()` also lists unindexed folders)."""
    with closing(sqlite3.connect(root / "registry.sqlite")) as conn:
        return [run_id for (run_id,) in conn.execute("SELECT run_id FROM runs ORDER BY run_id")]


def test_a_worker_run_leaves_the_index_to_the_coordinator(tiny, tmp_path):
    root = tmp_path / "r"
    index = RunIndex(root)
    index.reindex()  # the index exists, empty
    assert _indexed_run_ids(root) == []
    spec = spec_of(tiny, seeds=(0, 1))
    alone = train_one_experiment(
        expand(spec)[0].config, device="cpu", results_root=root, progress=False, index=False
    )
    assert alone.status == "completed" and _indexed_run_ids(root) == []  # not indexed by itself
    result = run_sweep(spec, SerialExecutor(), results_root=root)  # seed 0 done: skipped
    assert (result.started, result.skipped) == (1, 1)
    assert _indexed_run_ids(root) == [result.record.cells[1].run_id]


def test_a_second_coordinator_of_the_same_sweep_is_refused(tiny, tmp_path):
    root = tmp_path / "r"
    spec = spec_of(tiny, seeds=(0,))
    sweep_id = sweep_id_for(spec, expand(spec))
    with sweep_lock(root, sweep_id):
        with pytest.raises(SweepBusy, match=f"sweep {sweep_id} is being run by process"):
            run_sweep(spec, SerialExecutor(), results_root=root)
        assert not (root / "tiny").exists()  # no cell started
    assert (root / "sweeps" / sweep_id / ".lock").read_text() == ""  # released
