"""`fsmrun resume`: a run stopped mid-epoch ends bit-identical to one never stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from conftest import file_hashes

from fsmrun.analysis.audit import final_state_dict
from fsmrun.experiments import load_experiment
from fsmrun.runs.run_folder import RunFolder
from fsmrun.train.loop import train_one_experiment


def test_resume_of_a_run_stopped_mid_epoch_matches_the_uninterrupted_run(cli, trained, tmp_path):
    exp = load_experiment(str(trained.toml))
    root = tmp_path / "results"
    stopped = train_one_experiment(
        exp, device="cpu", results_root=root, progress=False, stop_at_step=3
    )
    assert stopped.status == "interrupted" and stopped.steps == 3
    result = cli("resume", stopped.run_id, "--results-dir", root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"run:       {stopped.run_id}" in result.stdout
    assert "status:    completed" in result.stdout
    record = RunFolder(stopped.run_dir).read_record()
    assert record.status == "completed" and record.steps == 8 and record.times_resumed == 1
    resumed, reference = final_state_dict(stopped.run_dir), final_state_dict(trained.folders[0])
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_resume_of_a_completed_run_needs_more_epochs(cli, trained):
    result = cli("resume", trained.run_ids[0], "--results-dir", trained.root)
    assert result.exit_code == 2, result.output
    assert "--epochs" in result.stderr and "completed" in result.stderr


# ---------------------------------------------------------------------------- crash safety


def stopped_run(trained, tmp_path, step: int = 3):
    """A tiny run interrupted after `step` (last.pt at that step, .prev at step 0)."""
    exp = load_experiment(str(trained.toml))
    root = tmp_path / "results"
    result = train_one_experiment(
        exp, device="cpu", results_root=root, progress=False, stop_at_step=step
    )
    assert result.status == "interrupted"
    return root, result


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(data))


def assert_same_final_weights(run_dir: Path, reference: Path) -> None:
    resumed, expected = final_state_dict(run_dir), final_state_dict(reference)
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def test_a_damaged_last_checkpoint_is_named_in_a_warning_and_recorded(cli, trained, tmp_path):
    root, stopped = stopped_run(trained, tmp_path)
    damage(stopped.run_dir / "checkpoints" / "last.pt")
    result = cli("resume", stopped.run_id, "--results-dir", root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "last.pt" in warnings[0] and "using last.prev.pt (step 0)" in warnings[0]
    record = RunFolder(stopped.run_dir).read_record()
    assert record.status == "completed" and len(record.checkpoint_fallbacks) == 1
    assert "using last.prev.pt (step 0)" in record.checkpoint_fallbacks[0]
    assert_same_final_weights(stopped.run_dir, trained.folders[0])  # from step 0: still exact


def test_a_failed_resume_leaves_every_file_of_the_run_as_it_was(cli, trained, tmp_path):
    root, stopped = stopped_run(trained, tmp_path)
    for name in ("last.pt", "last.prev.pt"):
        damage(stopped.run_dir / "checkpoints" / name)
    before = file_hashes(stopped.run_dir)
    result = cli("resume", stopped.run_id, "--results-dir", root, "--device", "cpu")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no usable checkpoint")
    assert "Traceback" not in result.output
    assert file_hashes(stopped.run_dir) == before
    record = RunFolder(stopped.run_dir).read_record()
    assert (record.status, record.times_resumed) == ("interrupted", 0)


def test_a_history_cut_after_the_checkpoint_is_refused_untouched(cli, trained, tmp_path):
    root, stopped = stopped_run(trained, tmp_path)
    history = stopped.run_dir / "logs" / "history.jsonl"
    lines = history.read_text().splitlines(keepends=True)
    # The checkpoint at step 3 counted 1 line (train, step 2); after it come the train line
    # of step 3 and the interruption's stop line (rewritten on resume). Cut the counted one.
    assert len(lines) == 3
    history.write_text("")
    before = file_hashes(stopped.run_dir)
    result = cli("resume", stopped.run_id, "--results-dir", root, "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "holds 0 complete lines but the checkpoint at step 3 counted 1" in result.stderr
    assert file_hashes(stopped.run_dir) == before


def test_a_torn_trailing_history_line_is_dropped_on_resume(cli, trained, tmp_path):
    root, stopped = stopped_run(trained, tmp_path)
    history = stopped.run_dir / "logs" / "history.jsonl"
    with history.open("a") as f:
        f.write('{"kind": "train", "st')  # a kill in the middle of a line
    result = cli("resume", stopped.run_id, "--results-dir", root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert all(line.endswith("}") for line in history.read_text().splitlines())
    assert_same_final_weights(stopped.run_dir, trained.folders[0])


HOLD_LOCK = """
import sys, time
from fsmrun.runs.index import RunIndex
from fsmrun.runs.run_folder import RunFolder
folder = RunFolder(sys.argv[1])
folder.acquire_lock()
folder.update_record(status="running", pid=__import__("os").getpid(), heartbeat=0.0)
RunIndex(folder.results_root).upsert_folder(folder.path)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_stopped_writer_keeps_its_run_until_it_is_killed(cli, trained_copy):
    folder = trained_copy.folders[0]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        os.kill(proc.pid, signal.SIGSTOP)  # Ctrl-Z; its heartbeat (0.0) is long stale
        result = cli("resume", trained_copy.run_ids[0], "--results-dir", trained_copy.root)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == (
            f"error: run {trained_copy.run_ids[0]} is being written by process {proc.pid} on "
            f"{socket.gethostname()}; wait for it or kill it"
        )
        overwrite = cli("train", trained_copy.toml, "--overwrite", "--results-dir",
                        trained_copy.root, "--device", "cpu")  # fmt: skip
        assert overwrite.exit_code == 2, overwrite.output
        assert "is being written by process" in overwrite.stderr
        rows = cli("ls", "--json", "--results-dir", trained_copy.root).stdout.splitlines()
        assert json.loads(rows[0])["status"] == "running"
    finally:
        proc.kill()
        proc.wait()
    assert RunFolder(folder).status() == "interrupted"
    rows = cli("ls", "--json", "--results-dir", trained_copy.root).stdout.splitlines()
    assert json.loads(rows[0])["status"] == "interrupted"


def test_extending_a_completed_run_from_the_command_line_makes_a_child(cli, trained_copy):
    parent = trained_copy.folders[0]
    before = file_hashes(parent)
    result = cli("resume", trained_copy.run_ids[0], "--no-early-stop", "--epochs", "3",
                 "--results-dir", trained_copy.root, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "extending" in result.stderr and "status:    completed" in result.stdout
    assert file_hashes(parent) == before
    child_id = next(
        line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("run:")
    )
    assert child_id != trained_copy.run_ids[0]
    rows = [
        json.loads(r)
        for r in cli("ls", "--json", "--results-dir", trained_copy.root).stdout.splitlines()
    ]
    child = next(r for r in rows if r["run_id"] == child_id)
    assert child["steps"] == 12 and child["status"] == "completed"
    shown = cli("show", child_id, "--results-dir", trained_copy.root)
    assert f"{trained_copy.run_ids[0]} from step 8" in shown.stdout
