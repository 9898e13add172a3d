"""The run folder: its layout, file round trips, audit marks kept, status moves, the lock."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from fsmrun.base.errors import UserError
from fsmrun.experiments import load_experiment
from fsmrun.runs.run_folder import (
    HEARTBEAT_TIMEOUT_S,
    RunFolder,
    RunFolderError,
    effective_status,
    status_now,
)
from fsmrun.schemas.records import RunRecord


def record(**fields) -> RunRecord:
    values = dict(
        run_id="regex_a-a1b2c3d4e5f6-v1",
        experiment="regex_a",
        config_hash="a1b2c3d4e5f6" + "0" * 52,
        version=1,
        status="running",
        command=["fsmrun", "train", "regex_a"],
        device="cpu",
        amp=False,
        deterministic=True,
        created=1000.0,
        updated=1000.0,
        heartbeat=1000.0,
        pid=123,
        hostname=socket.gethostname(),
    )
    return RunRecord(**{**values, **fields})


def test_every_path_sits_where_the_layout_says(tmp_path):
    folder = RunFolder(tmp_path / "regex_a" / "a1b2c3d4e5f6" / "v3")
    rel = {
        name: path.relative_to(folder.path).as_posix()
        for name, path in [
            ("run", folder.run_json),
            ("config", folder.config_json),
            ("env", folder.env_json),
            ("metrics", folder.metrics_json),
            ("history", folder.history),
            ("last", folder.checkpoint("last")),
            ("best", folder.checkpoint("best")),
            ("capture", folder.capture(7)),
            ("captures", folder.captures_dir),
            ("fsm_json", folder.fsm_json),
            ("fsm_dot", folder.fsm_dot),
            ("plots", folder.plots_dir),
        ]
    }
    assert rel == {
        "run": "run.json",
        "config": "config.json",
        "env": "env.json",
        "metrics": "metrics.json",
        "history": "logs/history.jsonl",
        "last": "checkpoints/last.pt",
        "best": "checkpoints/best.pt",
        "capture": "captures/epoch_0007.pt",
        "captures": "captures",
        "fsm_json": "fsm.json",
        "fsm_dot": "fsm.dot",
        "plots": "plots",
    }
    assert folder.results_root == tmp_path


def test_capture_epochs_lists_the_capture_files_in_order(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.capture_epochs() == []
    folder.captures_dir.mkdir()
    for name in ("epoch_0010.pt", "epoch_0002.pt", "epoch_0003.pt.tmp", "notes.txt"):
        (folder.captures_dir / name).write_bytes(b"x")
    assert folder.capture_epochs() == [2, 10]
    assert folder.capture(10).name == "epoch_0010.pt"


def test_the_automaton_files_read_back_as_written_or_none(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_fsm_json() is None and folder.read_fsm_dot() is None
    folder.write_fsm('{"states": 1}', "digraph { 0 }\n")
    assert folder.read_fsm_json() == '{"states": 1}\n'
    assert folder.read_fsm_dot() == "digraph { 0 }\n"


def test_a_checkpoint_counts_as_present_through_its_prev_copy(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.has_checkpoint("last")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.prev.pt").write_bytes(b"x")
    assert folder.has_checkpoint("last") and not folder.has_checkpoint("best")


def test_config_and_record_round_trip(tmp_path):
    folder = RunFolder(tmp_path)
    exp = load_experiment("regex_a")
    folder.write_config(exp)
    folder.write_record(record())
    assert folder.read_config() == exp
    assert folder.read_record() == record()
    assert folder.read_metrics() is None and folder.read_env() is None
    assert folder.load().run_id == "regex_a-a1b2c3d4e5f6-v1"


def test_writing_the_record_keeps_an_audit_mark_set_meanwhile(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_record(record())
    folder.update_record(audit_verified=True)  # an audit marks the run while it trains
    written = folder.write_record(record(steps=5))
    assert written.audit_verified is True and written.steps == 5
    assert folder.read_record().audit_verified is True


def test_status_moves_clear_the_pid_and_record_progress(tmp_path):
    folder = RunFolder(tmp_path)
    running = folder.write_record(record())
    beat = folder.heartbeat(running, steps=4, epochs=1)
    assert (beat.status, beat.steps, beat.epochs, beat.pid) == ("running", 4, 1, 123)
    assert beat.heartbeat > 1000.0
    done = folder.set_status(beat, "completed", steps=8, epochs=2)
    assert (done.status, done.steps, done.epochs, done.pid, done.error) == (
        "completed", 8, 2, None, None,
    )  # fmt: skip
    failed = folder.set_status(done, "failed", steps=8, epochs=2, error="boom")
    assert folder.read_record() == failed and failed.error == "boom"


def test_a_running_record_without_heartbeat_is_interrupted():
    now = 5000.0
    assert status_now("running", None, "elsewhere", now - 1.0, now) == "running"
    stale = now - HEARTBEAT_TIMEOUT_S - 1.0
    assert status_now("running", None, "elsewhere", stale, now) == "interrupted"
    assert status_now("completed", None, "elsewhere", stale, now) == "completed"


def test_a_running_record_of_a_dead_local_process_is_interrupted_and_persisted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    folder = RunFolder(tmp_path)
    folder.write_record(record(pid=proc.pid, heartbeat=9e12))
    assert effective_status(folder.read_record(), now=9e12) == "interrupted"
    assert folder.mark_interrupted_if_dead().status == "interrupted"
    assert folder.read_record().pid is None


def test_missing_or_invalid_run_json_is_a_user_error(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(RunFolderError, match="not a run folder"):
        folder.read_record()
    folder.run_json.write_text('{"run_id": 3}')
    with pytest.raises(UserError, match="is not a valid RunRecord: .*run_id"):
        folder.read_record()


def test_the_lock_admits_one_holder_at_a_time(tmp_path):
    folder = RunFolder(tmp_path)
    with (
        folder.lock(),
        pytest.raises(RunFolderError, match="being written by another process"),
        RunFolder(tmp_path).lock(),
    ):
        pass
    with folder.lock():  # released: taken again
        pass


def test_taking_the_lock_clears_leftovers_of_killed_writes(tmp_path):
    folder = RunFolder(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    leftovers = [
        tmp_path / "checkpoints" / "..last.pt.new.0a1b2c3d.tmp",
        tmp_path / ".run.json.deadbeef.tmp",
        tmp_path / "checkpoints" / ".last.pt.new",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"kept")
    with folder.lock():
        assert not any(path.exists() for path in leftovers)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"kept"
