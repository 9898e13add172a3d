"""Pre-flight and resume rules live in core: Python callers get the CLI's answers."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from fsmrun.base.errors import UserError
from fsmrun.base.hashing import config_hash
from fsmrun.experiments import load_experiment
from fsmrun.lang.fsm import RegexError
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import RunRecord
from fsmrun.train.loop import resume_run, train_one_experiment
from fsmrun.train.session import SessionControls, StopRule, check_resume, preflight

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"regex": "(a|b)*ab", "alphabet": "ab", "min_len": 1, "max_len": 8,
             "ood_min_len": 9, "ood_max_len": 10, "n_train": 32, "n_val": 8, "n_test": 8,
             "n_test_ood": 8},
    "model": {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ff": 16},
    "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 1, "log_every": 1},
}  # fmt: skip


CPU = SessionControls(device="cpu", progress=False)


def tiny(**data) -> ExperimentConfig:
    return ExperimentConfig.model_validate({**TINY, "data": {**TINY["data"], **data}})


def folder_with(tmp_path, status: str, epochs: int = 3, pid: int | None = None) -> RunFolder:
    folder = RunFolder(tmp_path / "regex_a" / "abc" / "v1")
    exp = load_experiment("regex_a")
    folder.write_config(
        exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": epochs})})
    )
    now = 1e12 if status == "running" else 1000.0
    folder.write_record(
        RunRecord(run_id="regex_a-abc-v1", experiment="regex_a", config_hash="abc" * 20,
                  version=1, status=status, command=["fsmrun"], device="cpu", amp=False,
                  deterministic=True, created=1000.0, updated=1000.0, heartbeat=now, pid=pid,
                  hostname=socket.gethostname())
    )  # fmt: skip
    return folder


def test_interrupted_and_failed_runs_resume_as_they_are(tmp_path):
    for status in ("interrupted", "failed"):
        record, exp, extend = check_resume(folder_with(tmp_path / status, status), None)
        assert record.status == status and exp.train.epochs == 3 and not extend


def test_a_completed_run_is_extended_only_with_a_new_stopping_rule(tmp_path):
    folder = folder_with(tmp_path, "completed")
    with pytest.raises(UserError, match="pass --epochs N with N > 3"):
        check_resume(folder, None)
    with pytest.raises(UserError, match="pass --epochs N with N > 3"):
        check_resume(folder, 3)
    with pytest.raises(UserError, match="below the run's epoch limit"):
        check_resume(folder, 2)
    _, extended, extend = check_resume(folder, 5)
    assert extended.train.epochs == 5 and extend
    _, no_stop, _ = check_resume(folder, rule=StopRule(early_stop=False))
    assert (no_stop.train.patience, no_stop.train.stop_threshold) == (None, None)
    _, patient, _ = check_resume(folder, rule=StopRule(patience=9))
    assert patient.train.patience == 9 and patient.train.epochs == 3


def test_an_interrupted_run_keeps_its_stopping_rule(tmp_path):
    folder = folder_with(tmp_path, "interrupted")
    with pytest.raises(UserError, match="resumes with its own stopping rule"):
        check_resume(folder, 5)
    with pytest.raises(UserError, match="resumes with its own stopping rule"):
        check_resume(folder, rule=StopRule(patience=2))


def test_a_live_run_is_not_resumed(tmp_path):
    folder = folder_with(tmp_path, "running", pid=os.getpid())
    with pytest.raises(UserError, match=f"being written by process {os.getpid()} on"):
        check_resume(folder, None)


def test_a_run_without_config_is_not_resumed(tmp_path):
    folder = folder_with(tmp_path, "interrupted")
    folder.config_json.unlink()
    with pytest.raises(UserError, match="no config.json"):
        check_resume(folder, None)


def test_resume_run_from_python_applies_the_rules(tmp_path):
    with pytest.raises(UserError, match="is completed"):
        resume_run(folder_with(tmp_path, "completed").path, device="cpu")


def test_preflight_returns_the_plan_of_the_run(tmp_path):
    controls = SessionControls(device="cpu", progress=False)
    plan = preflight(tiny(), controls, tmp_path / "results")
    assert plan.device == torch.device("cpu") and plan.controls is controls
    assert plan.config_hash == config_hash(tiny())
    data = plan.data
    assert data.splits["train"].num_strings == 32 and data.dfa.num_states == 3
    assert (tmp_path / "results" / ".cache" / "corpora").is_dir()


def test_train_from_python_refuses_a_bad_language_before_claiming_a_folder(tmp_path):
    with pytest.raises(RegexError):
        train_one_experiment(tiny(regex="a(b"), device="cpu", results_root=tmp_path)
    with pytest.raises(UserError, match="n_train"):
        train_one_experiment(tiny(regex="(ab)*"), device="cpu", results_root=tmp_path)
    assert not (tmp_path / "tiny").exists()


def test_preflight_refusing_the_data_leaves_no_results_folder_behind(tmp_path):
    for bad in (tiny(regex="a(b"), tiny(regex="(ab)*")):  # bad regex; corpus cannot be filled
        with pytest.raises(UserError):
            preflight(bad, CPU, tmp_path / "new" / "results")
    assert list(tmp_path.iterdir()) == []


def test_preflight_refuses_a_results_folder_under_a_read_only_one_creating_nothing(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("root writes anywhere")
        with pytest.raises(UserError, match=f"parent folder {locked} of .* is not writable"):
            preflight(tiny(), CPU, locked / "a" / "results")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_train_from_python_refuses_a_results_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot create the results folder"):
        train_one_experiment(tiny(), device="cpu", results_root=tmp_path / "file" / "r")


def test_controls_are_one_object_or_its_fields_as_keywords_not_both(tmp_path):
    with pytest.raises(TypeError, match="either controls or its fields"):
        train_one_experiment(tiny(), CPU, device="cpu", results_root=tmp_path)
    with pytest.raises(TypeError, match="devices"):
        train_one_experiment(tiny(), devices="cpu", results_root=tmp_path)
    assert list(tmp_path.iterdir()) == []
