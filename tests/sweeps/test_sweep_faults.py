"""The sweep layer under faults, as a user meets them: the coordinator killed (its workers stop
within seconds, leaving resumable runs), killed right after recording a cell or while writing
sweep.json, and workers killed mid-cell (FSMRUN_FAULT points). The same command then finishes
the sweep with every cell trained exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.sweep import SweepRecord

FSMRUN = str(Path(sys.executable).parent / "fsmrun")


@pytest.fixture
def tiny(tiny: str) -> Path:
    """The tiny experiment of this folder's conftest, as a path."""
    return Path(tiny)


def _sweep(tiny: Path, root: Path, *extra: str) -> list[str]:
    return [FSMRUN, "sweep", str(tiny), "--results-dir", str(root), *extra]


def _run(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FSMRUN_FAULT"}
    if fault:
        env["FSMRUN_FAULT"] = fault
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def _record(root: Path) -> SweepRecord:
    return SweepRecord.model_validate_json(next(root.glob("sweeps/*/sweep.json")).read_text())


def _versions(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("tiny/*/v*"))


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to `pid` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.slow
def test_kill_9_of_the_coordinator_stops_its_workers_and_leaves_runs_resumable(tiny, tmp_path):
    root = tmp_path / "r"
    args = _sweep(tiny, root, "--seeds", "0-1", "--workers", "2", "--set", "train.epochs=400",
                  "--set", "train.patience=null", "--set", "train.stop_threshold=null")  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(root.glob("tiny/*/v1/checkpoints/last.pt"))) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.1)
    children = _descendants(proc.pid)
    workers = {json.loads(p.read_text())["pid"] for p in root.glob("tiny/*/v1/run.json")}
    assert workers <= children and len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator alone: its workers are in own groups
    proc.communicate(timeout=30)
    killed_at = time.monotonic()
    while any(_alive(p) for p in children) and time.monotonic() - killed_at < 20:
        time.sleep(0.2)
    assert not [p for p in children if _alive(p)], "orphans outlived the coordinator"
    assert time.monotonic() - killed_at < 20
    statuses = [RunFolder(p).status() for p in root.glob("tiny/*/v1")]
    assert statuses == ["interrupted", "interrupted"]
    assert all(RunFolder(p).has_checkpoint("last") for p in root.glob("tiny/*/v1"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.slow
def test_kill_9_of_a_ray_coordinator_stops_its_tasks_and_leaves_runs_resumable(tiny, tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "r"
    args = _sweep(tiny, root, "--seeds", "0-1", "--backend", "ray", "--workers", "2",
                  "--threads", "1", "--set", "train.epochs=400", "--set", "train.patience=null",
                  "--set", "train.stop_threshold=null")  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(root.glob("tiny/*/v1/checkpoints/last.pt"))) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.1)
    # the processes running the two cells: Ray workers of the local Ray this coordinator started
    tasks = {json.loads(p.read_text())["pid"] for p in root.glob("tiny/*/v1/run.json")}
    assert tasks <= _descendants(proc.pid) and len(tasks) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    killed_at = time.monotonic()
    while any(_alive(p) for p in tasks) and time.monotonic() - killed_at < 20:
        time.sleep(0.2)
    assert not [p for p in tasks if _alive(p)], "Ray tasks outlived the coordinator"
    statuses = [RunFolder(p).status() for p in root.glob("tiny/*/v1")]
    assert statuses == ["interrupted", "interrupted"]  # resumable: the same command resumes
    assert all(RunFolder(p).has_checkpoint("last") for p in root.glob("tiny/*/v1"))


# A process that, like a Ray worker, blocks SIGINT, runs a cell whose coordinator is gone.
ORPHANED_CELL = """
import json, signal, subprocess, sys
from fsmrun.sweeps.executors import CellTask, run_cell
from fsmrun.sweeps.spec import expand, inline_spec
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
gone = subprocess.Popen(["true"]); gone.wait()
cell = expand(inline_spec([sys.argv[1]], {}, [0], {"train.epochs": 400,
    "train.patience": None, "train.stop_threshold": None}))[0]
outcome = run_cell(CellTask(cell.index, cell.config.model_dump_json(), sys.argv[2], threads=1,
                            config_hash=cell.config_hash, coordinator_pid=gone.pid))
print(json.dumps([outcome.status, list(signal.pthread_sigmask(signal.SIG_BLOCK, []))]))
"""


@pytest.mark.slow
def test_a_cell_in_a_process_blocking_sigint_still_stops_when_its_coordinator_is_gone(
    tiny, tmp_path
):
    # Ray starts its workers with SIGINT blocked: the watchdog's SIGINT must still get in
    out = subprocess.run([sys.executable, "-c", ORPHANED_CELL, str(tiny), str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    status, blocked_after = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == "interrupted"  # stopped cleanly at once, not trained for 400 epochs
    assert blocked_after == [int(signal.SIGINT)]  # the worker's own mask is given back
    (run,) = (tmp_path / "r").glob("tiny/*/v1")
    assert RunFolder(run).status() == "interrupted" and RunFolder(run).has_checkpoint("last")


@pytest.mark.slow
def test_a_coordinator_killed_after_a_result_or_mid_record_write_loses_nothing(tiny, tmp_path):
    root = tmp_path / "r"
    args = _sweep(tiny, root, "--seeds", "0-2", "--workers", "1")
    first = _run(args, fault="sweep_cell_result:1")  # killed right after cell 0 was recorded
    assert first.returncode == 137, first.stderr
    assert _record(root).counts["done"] == 1
    second = _run(args, fault="sweep_record_write:3")  # killed writing sweep.json (cell 1 done)
    assert second.returncode == 137, second.stderr
    assert _record(root).counts["done"] in (1, 2)  # the previous record, whole
    third = _run(args)
    assert third.returncode == 0, third.stderr
    assert _record(root).counts["done"] == 3
    assert _versions(root) == ["v1", "v1", "v1"]  # each cell trained once


@pytest.mark.slow
def test_workers_killed_mid_cell_cost_only_their_cells_and_the_rerun_resumes(tiny, tmp_path):
    root = tmp_path / "r"
    args = _sweep(tiny, root, "--seeds", "0-2", "--workers", "2")
    # every worker dies at the end of its cell's first epoch; the pool replaces each one
    first = _run(args, fault="sweep_worker_mid_cell:1")
    assert first.returncode == 0, first.stderr
    record = _record(root)
    assert record.counts["interrupted"] == 3 and record.counts["failed"] == 0
    assert "worker died" in (record.cells[0].error or "") or record.cells[0].error is None
    assert "run the same command again to resume" in first.stderr
    again = _run(args)  # no --retry-failed needed
    assert again.returncode == 0, again.stderr
    assert _record(root).counts["done"] == 3
    assert _versions(root) == ["v1", "v1", "v1"]  # resumed in place
    resumed = [json.loads(p.read_text())["times_resumed"] for p in root.glob("tiny/*/v1/run.json")]
    assert resumed == [1, 1, 1]
