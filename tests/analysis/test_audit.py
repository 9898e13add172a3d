"""The comparison logic of the determinism audit finds planted differences, and only those."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from fsmrun.analysis.audit import (
    compare_documents,
    compare_runs,
    compare_state_dicts,
    default_max_steps,
    mark_verified,
    mid_epoch_step,
)
from fsmrun.base.errors import UserError
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.train.checkpoint import KEY_MODEL, read_ckpt
from fsmrun.train.loop import train_one_experiment

TINY = {
    "name": "tiny",
    "data": {"regex": "(a|b)*ab", "alphabet": "ab", "max_len": 8, "ood_min_len": 9,
             "ood_max_len": 12, "n_train": 64, "n_val": 32, "n_test": 32, "n_test_ood": 32},
    "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
    "train": {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "log_every": 2},
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = ExperimentConfig.model_validate(TINY)
    root = tmp_path_factory.mktemp("results")
    result = train_one_experiment(exp, device="cpu", results_root=root, progress=False)
    assert result.status == "completed"
    return result.run_dir


@pytest.fixture
def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def statuses(checks) -> dict[str, str]:
    return {c.check: c.status for c in checks}


def test_a_run_compared_with_its_copy_is_identical_everywhere(run_dir, copy):
    checks = compare_runs(run_dir, copy, "a vs b")
    assert set(statuses(checks).values()) == {"identical"}
    assert len(checks) == 7 and all(c.compared == "a vs b" for c in checks)


def test_a_planted_history_loss_is_reported_with_its_difference(run_dir, copy):
    path = copy / "logs" / "history.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["losses"]["class"] += 0.25
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    checks = {c.check: c for c in compare_runs(run_dir, copy, "a vs b")}
    assert checks["history"].status == "different"
    assert checks["history"].max_abs_diff == pytest.approx(0.25)
    assert "[0].losses.class" in checks["history"].detail
    others = {k: c.status for k, c in checks.items() if k != "history"}
    assert set(others.values()) == {"identical"}


def test_timing_fields_and_wall_time_are_ignored(run_dir, copy):
    path = copy / "logs" / "history.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        r["time"] += 100.0
        r["steps_per_s"] = 1.0
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["wall_time_s"] += 5.0
    metrics["run_id"] = "tiny-other-v9"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert set(statuses(compare_runs(run_dir, copy, "a vs b")).values()) == {"identical"}


def test_a_missing_history_record_is_different(run_dir, copy):
    path = copy / "logs" / "history.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    check = next(c for c in compare_runs(run_dir, copy, "x") if c.check == "history")
    assert check.status == "different" and check.max_abs_diff is None
    assert check.detail == f"{len(lines)} vs {len(lines) - 1} history records"


def test_a_changed_metric_and_a_changed_hash_are_reported(run_dir, copy):
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["best"]["test"]["string_acc"] -= 0.125
    (copy / "metrics.json").write_text(json.dumps(metrics))
    hashes = RunFolder(copy).read_record().hashes.model_copy(update={"batch_order": "0" * 64})
    RunFolder(copy).update_record(hashes=hashes.model_dump())
    checks = {c.check: c for c in compare_runs(run_dir, copy, "x")}
    assert checks["metrics"].status == "different"
    assert checks["metrics"].max_abs_diff == pytest.approx(0.125)
    assert checks["metrics"].detail.startswith("best.test.string_acc")
    assert checks["batch_order"].status == "different"
    assert checks["init_weights"].status == "identical"


def test_final_weights_differences_are_measured(run_dir):
    _, inner = read_ckpt(run_dir / "checkpoints" / "last.pt")
    a = inner[KEY_MODEL]
    b = {k: v.clone() for k, v in a.items()}
    name = next(k for k, v in b.items() if v.is_floating_point())
    b[name].view(-1)[0] += 0.5
    status, diff, detail = compare_state_dicts(a, b)
    assert status == "different" and diff == pytest.approx(0.5) and name in detail
    assert compare_state_dicts(a, b, tolerance=1.0)[0] == "within_tolerance"
    assert compare_state_dicts(a, {k: v.clone() for k, v in a.items()})[:2] == ("identical", 0.0)
    missing = dict(b)
    missing.pop(name)
    assert compare_state_dicts(a, missing)[0] == "different"
    reshaped = {**a, name: torch.zeros(3)}
    assert compare_state_dicts(a, reshaped)[0] == "different"


def test_compare_documents_numbers_by_difference_everything_else_exactly():
    a = {"x": 1.0, "y": [1, 2], "s": "ok", "n": None, "f": float("nan")}
    assert compare_documents(a, dict(a)) == ("identical", 0.0, "6 values")
    status, diff, detail = compare_documents(a, {**a, "y": [1, 2.5]})
    assert (status, diff, detail) == ("different", 0.5, "y[1]: 2 vs 2.5")
    assert compare_documents(a, {**a, "x": 1.0005}, tolerance=1e-3)[0] == "within_tolerance"
    assert compare_documents(a, {**a, "s": "no"}, tolerance=1.0)[0] == "different"
    assert compare_documents(a, {**a, "f": 0.0})[1] == math.inf
    assert compare_documents(a, {"x": 1.0})[0] == "different"


def test_resume_split_step_is_mid_epoch():
    assert mid_epoch_step(8, 4) == 3  # 4 ends epoch 1: step back one
    assert mid_epoch_step(64, 32) == 31
    assert mid_epoch_step(10, 4) == 5
    with pytest.raises(ValueError, match="at least 2 steps"):
        mid_epoch_step(1, 4)


def test_default_audit_length_is_whole_epochs_of_at_least_60_steps():
    exp = ExperimentConfig.model_validate(TINY)
    assert default_max_steps(exp) == 8  # the whole config: 2 epochs of 4 steps
    longer = exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": 100})})
    assert default_max_steps(longer) == 60  # 15 epochs of 4 steps
    wide = exp.model_copy(update={"train": exp.train.model_copy(update={"batch_size": 5})})
    assert default_max_steps(wide) == 26  # 13 steps a run, 2 epochs allowed
    stream = exp.model_copy(
        update={
            "train": exp.train.model_copy(
                update={"sampling": "stream", "stream_steps": 7, "epochs": 100}
            )
        }
    )
    assert default_max_steps(stream) == 63  # 9 epochs of stream_steps 7, not of the corpus


def test_mark_verified_marks_only_runs_of_the_config(run_dir, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(run_dir.parents[2], root)
    chash = RunFolder(run_dir).read_record().config_hash
    folder = root / run_dir.relative_to(run_dir.parents[2])
    assert mark_verified(root, "tiny", "f" * 64) == []
    assert RunFolder(folder).read_record().audit_verified is None
    assert mark_verified(root, "tiny", chash) == [RunFolder(folder).read_record().run_id]
    assert RunFolder(folder).read_record().audit_verified is True


def test_mark_verified_leaves_a_run_whose_writer_holds_its_lock(run_dir, tmp_path):
    from fsmrun.runs.run_folder import RunFolder

    root = tmp_path / "results"
    shutil.copytree(run_dir.parents[2], root)
    chash = RunFolder(run_dir).read_record().config_hash
    writer = RunFolder(root / run_dir.relative_to(run_dir.parents[2]))
    writer.acquire_lock()
    RunFolder(writer.path).update_record(status="running")  # as its writer would say
    try:
        assert mark_verified(root, "tiny", chash) == []
        assert RunFolder(writer.path).read_record().audit_verified is None
    finally:
        writer.release_lock()


def test_audit_and_record_refuses_bad_requests_before_training(tmp_path, monkeypatch):
    from fsmrun.analysis import audit
    from fsmrun.experiments import load_experiment

    trained: list[object] = []
    monkeypatch.setattr(audit, "train_one_experiment", lambda *a, **k: trained.append(a))
    exp = load_experiment("regex_a")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot create the results folder"):
        audit.audit_and_record(exp, blocker / "results")
    with pytest.raises(UserError, match="--runs must be at least 2"):
        audit.audit_and_record(exp, tmp_path / "results", runs=1)
    with pytest.raises(UserError, match="unknown device"):
        audit.audit_and_record(exp, tmp_path / "results", device="tpu")
    assert trained == [] and not (tmp_path / "results").exists()
