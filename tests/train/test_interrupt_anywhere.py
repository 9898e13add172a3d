"""Ctrl-C at any moment after a run is set up, the final evaluation included, leaves run.json
`interrupted` (never `running`), and a resume finishes the run with the metrics of a run that
was never interrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.train import state
from fsmrun.train.loop import resume_run, train_one_experiment
from fsmrun.train.session import Session

MICRO = ExperimentConfig.model_validate(
    {
        "name": "micro",
        "seed": 7,
        "data": {"regex": "b*(ab*ab*)*", "alphabet": "ab", "min_len": 0, "max_len": 8,
                 "ood_min_len": 9, "ood_max_len": 12, "n_train": 64, "n_val": 16, "n_test": 16,
                 "n_test_ood": 16},
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
        "train": {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "log_every": 2},
    }
)  # fmt: skip


def _interrupt_on_call(monkeypatch, module, name: str, call: int) -> None:
    """Make `module.name` raise KeyboardInterrupt (as SIGINT does) on its `call`-th call."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _metrics_without_times(folder: Path) -> dict:
    doc = json.loads((folder / "metrics.json").read_text())
    for key in ("wall_time_s", "run_id"):
        doc.pop(key)
    return doc


@pytest.fixture(scope="module")
def clean_metrics(tmp_path_factory) -> dict:
    """The metrics of the same run never interrupted."""
    root = tmp_path_factory.mktemp("clean")
    done = train_one_experiment(MICRO, device="cpu", results_root=root, progress=False)
    return _metrics_without_times(done.run_dir)


@pytest.mark.parametrize(
    ("module", "name", "call", "where"),
    [
        (state, "evaluate_checkpoint", 1, "evaluating last.pt"),
        (state, "evaluate_checkpoint", 2, "evaluating best.pt"),
        (RunFolder, "write_metrics", 1, "writing metrics.json"),
        (Session, "set_status", 1, "marking the run completed"),
    ],
    ids=["final-eval-last", "final-eval-best", "metrics-write", "status-completed"],
)
def test_ctrl_c_after_training_leaves_an_interrupted_run_that_resumes_to_the_same_result(
    tmp_path, monkeypatch, clean_metrics, module, name, call, where
):
    with monkeypatch.context() as patch:
        _interrupt_on_call(patch, module, name, call)
        with pytest.raises(KeyboardInterrupt):
            train_one_experiment(MICRO, device="cpu", results_root=tmp_path, progress=False)
    (folder,) = (tmp_path / "micro").glob("*/v1")
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "interrupted", where
    assert record["pid"] is None
    assert record["error"] == "KeyboardInterrupt: "
    resumed = resume_run(folder, device="cpu", progress=False)
    assert resumed.status == "completed"
    assert json.loads((folder / "run.json").read_text())["status"] == "completed"
    assert _metrics_without_times(folder) == clean_metrics
