"""Deletang et al.'s protocol end to end on a micro experiment: streamed batches resume bit for
bit, the encoder trains on the final class alone, and the reported checkpoint is a choice."""

from __future__ import annotations

import json

import pytest
import torch

from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import Metrics, RunRecord
from fsmrun.train.checkpoint import read_ckpt
from fsmrun.train.loop import resume_run, train_one_experiment


def micro(model: dict | None = None, **train) -> ExperimentConfig:
    base = {
        "epochs": 3,
        "batch_size": 8,
        "lr": 3e-3,
        "warmup_steps": 2,
        "log_every": 2,
        "patience": None,
        "sampling": "stream",
        "stream_steps": 4,
        "lambda_next": 0.0,
        "lambda_state": 0.0,
        "class_loss_on": "final",
    }
    base.update(train)
    return ExperimentConfig.model_validate(
        {
            "name": "micro_stream",
            "seed": 7,
            "data": {
                "regex": "b*(ab*ab*)*",
                "alphabet": "ab",
                "sampling": "uniform",
                "min_len": 1,
                "max_len": 8,
                "ood_min_len": 9,
                "ood_max_len": 12,
                "n_train": 16,
                "n_val": 16,
                "n_test": 16,
                "n_test_ood": 16,
            },
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, **(model or {})},
            "train": base,
        }
    )


def _train(exp, root, **kw):
    return train_one_experiment(exp, device="cpu", results_root=root, progress=False, **kw)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return read_ckpt(run_dir / "checkpoints" / "last.pt")[1]["model"]


def _metrics(run_dir) -> dict:
    doc = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in doc.items() if k not in ("wall_time_s", "run_id")}


def test_a_streamed_run_takes_stream_steps_per_epoch_and_records_its_draws(tmp_path):
    result = _train(micro(), tmp_path)
    assert result.status == "completed" and result.steps == 3 * 4
    record = RunRecord.model_validate_json((result.run_dir / "run.json").read_text())
    again = _train(micro(), tmp_path / "again")
    other = RunRecord.model_validate_json((again.run_dir / "run.json").read_text())
    assert record.hashes == other.hashes  # batch_order hashes epoch 0's draws
    _assert_same(_weights(result.run_dir), _weights(again.run_dir))


@pytest.mark.parametrize("stop_at", [6, 8])  # mid-epoch and an epoch end
def test_a_streamed_run_resumes_bit_identical(tmp_path, stop_at):
    exp = micro(save_every=3)
    full = _train(exp, tmp_path / "full").run_dir
    stopped = _train(exp, tmp_path / "split", stop_at_step=stop_at)
    assert stopped.status == "interrupted" and stopped.steps == stop_at
    resumed = resume_run(stopped.run_dir, device="cpu", progress=False)
    assert resumed.status == "completed"
    _assert_same(_weights(full), _weights(resumed.run_dir))
    assert _metrics(full) == _metrics(resumed.run_dir)


def test_the_encoder_trains_and_reports_the_final_parameters(tmp_path):
    exp = micro({"causal": False, "pos_encoding": "relative"}, evaluate_checkpoint="last")
    result = _train(exp, tmp_path)
    assert result.status == "completed"
    metrics = Metrics.model_validate_json((result.run_dir / "metrics.json").read_text())
    assert metrics.evaluated == "last" and metrics.last.step == 12
    ood = metrics.last.test_ood
    assert ood.length_mean_acc is not None and 0.0 <= ood.length_mean_acc <= 1.0
    record = RunRecord.model_validate_json((result.run_dir / "run.json").read_text())
    assert "encoder" in record.model_summary


def test_the_encoder_refuses_losses_it_cannot_define():
    with pytest.raises(ValueError, match="non-causal encoder"):
        micro({"causal": False}, class_loss_on="all")
    with pytest.raises(ValueError, match="lambda_next"):
        micro({"causal": False}, lambda_next=1.0)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
