"""`fsmrun resume`: a run stopped mid-epoch ends bit-identical to one never stopped."""

from __future__ import annotations

import torch

from fsmrun.core.audit import final_state_dict
from fsmrun.core.loop import train_one_experiment
from fsmrun.core.run_folder import read_run_record
from fsmrun.experiments import load_experiment


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
    record = read_run_record(stopped.run_dir)
    assert record.status == "completed" and record.steps == 8 and record.times_resumed == 1
    resumed, reference = final_state_dict(stopped.run_dir), final_state_dict(trained.folders[0])
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_resume_of_a_completed_run_needs_more_epochs(cli, trained):
    result = cli("resume", trained.run_ids[0], "--results-dir", trained.root)
    assert result.exit_code == 2, result.output
    assert "--epochs" in result.stderr and "completed" in result.stderr
