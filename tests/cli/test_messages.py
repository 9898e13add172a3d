"""Warnings instead of surprises, and messages that say what actually happened: a warm-up
longer than the run, an extension its inherited patience would cut short, a failed run's
reason on stderr with --no-progress, a filter that matched nothing, an audit run that failed."""

from __future__ import annotations

import json

import pytest

from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import EarlyStopState
from fsmrun.train.early_stop import extension_warning
from fsmrun.train.optim import warmup_warning

BLOW_UP = ("--set", "train.lr=1e30", "--no-progress", "--device", "cpu")


def _train_config(**train) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"name": "x", "data": {"regex": "a*", "alphabet": "ab"}, "train": train}
    )


def test_a_warm_up_longer_than_the_run_is_a_warning_with_the_peak_it_reaches():
    cfg = _train_config(lr=0.003, warmup_steps=50).train
    # 39 steps of a 50-step warm-up: the last update uses lr * 39 / 50.
    assert warmup_warning(cfg, 39) == (
        "train.warmup_steps (50) is longer than the run (39 steps): the learning rate peaks at "
        "0.00234, never reaching train.lr (0.003); lower it, e.g. --set train.warmup_steps=3"
    )
    assert warmup_warning(cfg, 50) is None


@pytest.mark.parametrize(
    ("patience", "bad", "done", "epochs", "left"),
    [(3, 2, 6, 8, 1), (5, 5, 6, 9, 1), (4, 1, 2, 10, 3), (3, 0, 6, 8, None), (3, 1, 6, 8, None)],
)
def test_an_extension_cut_short_by_inherited_patience_is_warned(patience, bad, done, epochs, left):
    cfg = _train_config(patience=patience, epochs=epochs).train
    warning = extension_warning(cfg, EarlyStopState(monitor=cfg.monitor, mode="max",
                                                    bad_epochs=bad), done)  # fmt: skip
    if left is None:
        assert warning is None
    else:
        assert f"stops after {left} more epoch(s)" in warning
        assert f"before epoch {epochs}; pass --no-early-stop" in warning


def test_no_extension_warning_without_patience():
    cfg = _train_config(patience=None, epochs=8).train
    assert extension_warning(cfg, EarlyStopState(monitor=cfg.monitor, mode="max",
                                                 bad_epochs=4), 6) is None  # fmt: skip


def test_train_warns_of_a_warm_up_longer_than_the_run(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                 "--no-progress", "--set", "train.warmup_steps=50")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: train.warmup_steps (50) is longer than the run (8 steps)" in result.stderr


def test_extending_a_run_its_patience_would_stop_warns(cli, tiny_toml, tmp_path):
    # lr ~ 0: nothing improves after epoch 1, so patience 2 stops the parent at epoch 3.
    sets = ["--set", "train.lr=1e-12", "--set", "train.patience=2", "--set", "train.epochs=4",
            "--set", "train.schedule=constant", "--set", "train.warmup_steps=0"]  # fmt: skip
    first = cli("train", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                "--no-progress", *sets)  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "stopped:   patience after 12 steps, 3 epochs" in first.stdout
    run_id = first.stdout.split()[1]
    result = cli("resume", run_id, "--epochs", "8", "--results-dir", tmp_path, "--device",
                 "cpu", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "warning: the extension inherits 2 evaluation(s) without improvement of val.string_acc "
        "from its parent: with patience 2 it stops after 1 more epoch(s)"
    ) in result.stderr
    assert "stopped:   patience after 16 steps, 4 epochs" in result.stdout


def test_a_failed_run_says_why_on_stderr_without_progress_and_eval_points_to_last(
    cli, tiny_toml, tmp_path
):
    result = cli("train", tiny_toml, "--results-dir", tmp_path, *BLOW_UP)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    run_id = result.stdout.split()[1]
    assert errors == [
        f"error: run {run_id} failed at step 2: non-finite training statistics before step 2 "
        "(total=nan, next=nan, class=nan, state=nan, grad_norm=nan); lower train.lr or set "
        "train.grad_clip; the last good checkpoint is kept; "
        f"`fsmrun eval {run_id} --checkpoint last` scores its last good checkpoint"
    ]
    evaluated = cli("eval", run_id, "--results-dir", tmp_path, "--device", "cpu")
    assert evaluated.exit_code == 2
    assert evaluated.stderr.startswith(f"error: {run_id} has no best checkpoint (it is failed")
    assert evaluated.stderr.rstrip().endswith("evaluate its last one with --checkpoint last")
    last = cli("eval", run_id, "--checkpoint", "last", "--json", "--results-dir", tmp_path,
               "--device", "cpu")  # fmt: skip
    assert last.exit_code == 0, last.output
    assert json.loads(last.stdout)["step"] == 0


def test_ls_says_when_a_filter_matched_none_of_the_runs(cli, trained):
    result = cli("ls", "--status", "failed", "--results-dir", trained.root)
    assert result.exit_code == 0
    assert result.stderr == (
        f"no runs match --status failed under {trained.root} (2 run(s) in all; drop the "
        "filter to list them)\n"
    )


def test_an_audit_run_that_fails_carries_its_own_error_not_a_deleted_folder(cli, tiny_toml,
                                                                           tmp_path):  # fmt: skip
    result = cli("audit-determinism", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                 "--set", "train.lr=1e30", "--max-steps", "2")  # fmt: skip
    assert result.exit_code == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "audit run 1 ended failed (non_finite: non-finite training statistics" in error
    assert "its scratch folder is deleted" in error
    assert "fsmrun-audit-" not in error
