"""The training loop end to end on a micro experiment: artifacts, determinism, exact resume,
early stopping, best vs last, non-finite losses, hook order, and equality with a bare loop."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_tensors, file_hashes

from fsmrun.base.seeding import set_seed, torch_generator
from fsmrun.data.batching import iter_batches
from fsmrun.data.prepare import build_data
from fsmrun.nn.losses import compute_losses
from fsmrun.nn.model import build_model
from fsmrun.schemas.config import ExperimentConfig, TrainConfig
from fsmrun.schemas.records import TIMING_FIELDS, EnvInfo, HistoryRecord, Metrics, RunRecord
from fsmrun.train.checkpoint import read_ckpt
from fsmrun.train.early_stop import EarlyStopper
from fsmrun.train.history import read_history
from fsmrun.train.hooks import Hooks
from fsmrun.train.loop import resume_run, train_one_experiment
from fsmrun.train.optim import clip_gradients, lr_at, optimizer_from_config, set_lr
from fsmrun.train.step import StepRunner


def micro(**train) -> ExperimentConfig:
    base = {
        "epochs": 3,
        "batch_size": 16,
        "lr": 3e-3,
        "warmup_steps": 2,
        "log_every": 2,
        "patience": None,
    }
    base.update(train)
    return ExperimentConfig.model_validate(
        {
            "name": "micro",
            "seed": 7,
            "data": {
                "regex": "b*(ab*ab*)*",
                "alphabet": "ab",
                "min_len": 0,
                "max_len": 8,
                "ood_min_len": 9,
                "ood_max_len": 12,
                "n_train": 64,
                "n_val": 16,
                "n_test": 16,
                "n_test_ood": 16,
            },
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.1},
            "train": base,
        }
    )


def _train(exp, root, **kw):
    return train_one_experiment(exp, device="cpu", results_root=root, progress=False, **kw)


# micro(): 4 steps an epoch, a train line every 2 steps, an eval line per epoch, 3 epochs.
MICRO_KINDS = ["train", "train", "eval"] * 3 + ["stop"]


def _history(run_dir) -> list[dict]:
    """history.jsonl without its timings; never empty (comparing two empty files proves
    nothing)."""
    lines = [
        {k: v for k, v in r.model_dump().items() if k not in TIMING_FIELDS}
        for r in read_history(run_dir / "logs" / "history.jsonl")
    ]
    assert lines, f"{run_dir}/logs/history.jsonl is empty"
    return lines


def _weights(run_dir, name="last.pt") -> dict[str, torch.Tensor]:
    return read_ckpt(run_dir / "checkpoints" / name)[1]["model"]


def _metrics(run_dir) -> dict:
    doc = json.loads((run_dir / "metrics.json").read_text())
    doc.pop("wall_time_s")
    doc.pop("run_id")
    return doc


def test_micro_run_writes_every_artifact_schema_valid(tmp_path):
    result = _train(micro(), tmp_path)
    run = result.run_dir
    assert result.status == "completed" and result.stop_reason == "max_epochs"
    assert run.relative_to(tmp_path).parts[0] == "micro" and run.name == "v1"
    for name in ("config.json", "fsm.json", "fsm.dot", "run.json", "env.json", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    ExperimentConfig.model_validate_json((run / "config.json").read_text())
    EnvInfo.model_validate_json((run / "env.json").read_text())
    record = RunRecord.model_validate_json((run / "run.json").read_text())
    metrics = Metrics.model_validate_json((run / "metrics.json").read_text())
    assert record.status == "completed" and record.pid is None
    assert record.steps == 12 and record.epochs == 3  # 64 strings / 16 = 4 steps x 3 epochs
    assert metrics.steps == 12 and metrics.last.step == 12
    assert metrics.last.test_ood is not None
    history = read_history(run / "logs" / "history.jsonl")
    kinds = [r.kind for r in history]
    assert kinds.count("eval") == 3 and kinds[-1] == "stop"
    assert [r.step for r in history if r.kind == "train"] == [2, 4, 6, 8, 10, 12]


def test_two_cpu_runs_are_bit_identical(tmp_path):
    a = _train(micro(), tmp_path / "a").run_dir
    b = _train(micro(), tmp_path / "b").run_dir
    assert_same_tensors(_weights(a), _weights(b))
    assert [line["kind"] for line in _history(a)] == MICRO_KINDS
    assert _history(a) == _history(b)
    assert _metrics(a) == _metrics(b)
    ra = RunRecord.model_validate_json((a / "run.json").read_text())
    rb = RunRecord.model_validate_json((b / "run.json").read_text())
    assert ra.hashes == rb.hashes


def test_a_different_seed_changes_initial_weights(tmp_path):
    a = _train(micro(epochs=1), tmp_path).run_dir
    other = micro(epochs=1).model_copy(update={"seed": 8})
    b = _train(other, tmp_path).run_dir
    ha = RunRecord.model_validate_json((a / "run.json").read_text()).hashes
    hb = RunRecord.model_validate_json((b / "run.json").read_text()).hashes
    assert ha.init_weights != hb.init_weights and ha.corpus != hb.corpus


@pytest.mark.parametrize("stop_at", [6, 8])  # mid-epoch (epoch 1, batch 2) and an epoch end
def test_resume_from_interruption_is_bit_identical_to_an_uninterrupted_run(tmp_path, stop_at):
    exp = micro(save_every=3)
    full = _train(exp, tmp_path / "full").run_dir
    stopped = _train(exp, tmp_path / "split", stop_at_step=stop_at)
    assert stopped.status == "interrupted" and stopped.steps == stop_at
    record = RunRecord.model_validate_json((stopped.run_dir / "run.json").read_text())
    assert record.status == "interrupted"
    resumed = resume_run(stopped.run_dir, device="cpu", progress=False)
    assert resumed.status == "completed"
    assert_same_tensors(_weights(full), _weights(resumed.run_dir))
    assert_same_tensors(_weights(full, "best.pt"), _weights(resumed.run_dir, "best.pt"))
    # Lines written after the checkpoint (the interruption's stop line) are dropped on resume.
    assert [line["kind"] for line in _history(full)] == MICRO_KINDS
    assert _history(resumed.run_dir) == _history(full)
    assert _metrics(full) == _metrics(resumed.run_dir)
    record = RunRecord.model_validate_json((resumed.run_dir / "run.json").read_text())
    assert record.times_resumed == 1 and record.status == "completed"


def test_extending_a_finished_run_creates_a_child_run_and_leaves_the_parent_untouched(tmp_path):
    parent = _train(micro(epochs=2), tmp_path)
    before = file_hashes(parent.run_dir)
    result = resume_run(parent.run_dir, epochs=3, device="cpu", progress=False)
    assert file_hashes(parent.run_dir) == before
    assert result.status == "completed" and result.steps == 12 and result.run_dir != parent.run_dir
    child = RunRecord.model_validate_json((result.run_dir / "run.json").read_text())
    assert (child.parent_run, child.parent_step) == (parent.run_id, 8)
    assert (
        child.config_hash
        != RunRecord.model_validate_json((parent.run_dir / "run.json").read_text()).config_hash
    )
    assert json.loads((result.run_dir / "config.json").read_text())["train"]["epochs"] == 3
    # The child's history continues the parent's: its first lines are the parent's up to
    # the checkpoint (all but the parent's stop line).
    assert (
        _history(result.run_dir)[: len(_history(parent.run_dir)) - 1]
        == _history(parent.run_dir)[:-1]
    )


def test_extension_can_change_the_stopping_rule(tmp_path):
    # lr ~ 0: no improvement after epoch 1, so patience 1 stops the parent at epoch 2.
    exp = micro(epochs=6, lr=1e-12, patience=1, warmup_steps=0, schedule="constant")
    parent = _train(exp, tmp_path)
    assert parent.stop_reason == "patience" and parent.steps == 8
    child = resume_run(parent.run_dir, early_stop=False, device="cpu", progress=False)
    assert child.stop_reason == "max_epochs" and child.steps == 24
    longer = resume_run(parent.run_dir, patience=3, device="cpu", progress=False)
    assert longer.stop_reason == "patience" and longer.steps == 16


def test_early_stopping_on_patience_is_recorded(tmp_path):
    # lr = 0: nothing improves after the first evaluation, so patience 2 stops at epoch 3.
    exp = micro(epochs=10, lr=1e-12, patience=2, warmup_steps=0, schedule="constant")
    result = _train(exp, tmp_path)
    assert result.stop_reason == "patience"
    metrics = Metrics.model_validate_json((result.run_dir / "metrics.json").read_text())
    assert metrics.stop_reason == "patience" and metrics.epochs == 3
    assert metrics.early_stop.bad_epochs == 2 and metrics.early_stop.best_epoch == 0
    assert read_history(result.run_dir / "logs" / "history.jsonl")[-1].stop_reason == "patience"


def test_best_checkpoint_differs_from_last_when_later_epochs_do_not_improve(tmp_path):
    exp = micro(monitor="val.nll", monitor_mode="min", min_delta=1e9)
    metrics = _train(exp, tmp_path).metrics
    assert metrics.best.epoch == 1 and metrics.best.step == 4  # saved after the first epoch
    assert metrics.last.step == 12
    assert metrics.best.val.nll != metrics.last.val.nll


def test_threshold_stops_training(tmp_path):
    exp = micro(epochs=5, monitor="val.nll", monitor_mode="min", stop_threshold=1e9)
    result = _train(exp, tmp_path)
    assert result.stop_reason == "threshold" and result.steps == 4


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    hooks = Hooks()

    def poison(ctx):
        if ctx.step == 5:
            with torch.no_grad():
                next(ctx.model.parameters()).fill_(float("nan"))

    hooks.add("on_step_end", poison)
    result = _train(micro(), tmp_path, hooks=hooks)
    assert result.status == "failed" and result.stop_reason == "non_finite"
    record = RunRecord.model_validate_json((result.run_dir / "run.json").read_text())
    assert record.status == "failed" and "non-finite" in record.error
    kept = read_ckpt(result.run_dir / "checkpoints" / "last.pt")[1]
    assert all(torch.isfinite(t).all() for t in kept["model"].values())
    history = read_history(result.run_dir / "logs" / "history.jsonl")
    assert history[-1].stop_reason == "non_finite"


def test_hooks_fire_in_documented_order(tmp_path):
    events: list[tuple[str, int]] = []
    hooks = Hooks()
    for name in ("on_epoch_start", "on_step_end", "on_validation_end", "on_epoch_end"):
        hooks.add(name, lambda ctx, name=name: events.append((name, ctx.epoch)))
    _train(micro(epochs=2), tmp_path, hooks=hooks)
    one_epoch = ["on_epoch_start"] + ["on_step_end"] * 4 + ["on_validation_end", "on_epoch_end"]
    assert [e for e, _ in events] == one_epoch * 2
    assert events[0] == ("on_epoch_start", 0) and events[-1] == ("on_epoch_end", 1)


def test_capture_hook_saves_attention_and_hidden_states(tmp_path):
    result = _train(micro(epochs=2, capture_epochs=[1], capture_batch_size=4), tmp_path)
    files = sorted((result.run_dir / "captures").iterdir())
    assert [f.name for f in files] == ["epoch_0001.pt"]
    capture = torch.load(files[0], weights_only=True)
    batch, width = capture["input_ids"].shape
    assert batch == 4
    assert capture["attentions"].shape == (1, 4, 2, width, width)  # [L, B, H, T, T]
    assert capture["hidden_states"].shape == (2, 4, width, 16)  # [L + 1, B, T, D]


def test_each_value_is_computed_once_per_run(tmp_path, monkeypatch):
    """The DFA and the config hash once per run, each epoch's batch order once (the steps, the
    checkpoints and the run.json hash share it)."""
    from fsmrun.data import prepare
    from fsmrun.train import session

    calls: dict[str, list] = {"dfa": [], "hash": [], "order": []}

    def counted(name, fn, key=lambda *a, **k: None):
        def wrapper(*args, **kwargs):
            calls[name].append(key(*args, **kwargs))
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(session, "build_dfa", counted("dfa", session.build_dfa))
    monkeypatch.setattr(prepare, "build_dfa", counted("dfa", prepare.build_dfa))
    monkeypatch.setattr(session, "config_hash", counted("hash", session.config_hash))
    order = counted("order", session.epoch_batches, key=lambda n, b, seed, epoch, **k: epoch)
    monkeypatch.setattr(session, "epoch_batches", order)
    result = _train(micro(), tmp_path)
    assert result.status == "completed" and result.steps == 12
    assert len(calls["dfa"]) == 1 and len(calls["hash"]) == 1
    assert calls["order"] == [0, 1, 2]  # 3 epochs; the last decides to stop, so no epoch 3


def test_rerunning_the_same_config_allocates_a_new_version(tmp_path):
    first = _train(micro(epochs=1), tmp_path).run_dir
    second = _train(micro(epochs=1), tmp_path).run_dir
    assert (first.name, second.name) == ("v1", "v2") and first.parent == second.parent


def test_step_runner_updates_weights_bitwise_like_a_bare_loop():
    exp = micro()
    cfg: TrainConfig = exp.train
    data = build_data(exp, torch.device("cpu"), None)
    train = data.splits["train"]
    batches = list(iter_batches(train, cfg.batch_size, exp.seed, 0)) * 2

    def fresh():
        set_seed(exp.seed, True)
        model = build_model(
            exp.model,
            data.vocab.size,
            data.dfa.num_states,
            generator=torch_generator(exp.seed, "init"),
        )
        return model, optimizer_from_config(model, cfg)

    model_a, opt_a = fresh()
    runner = StepRunner(model_a, opt_a, cfg, total_steps=len(batches))
    for step, batch in enumerate(batches):
        runner.step(batch, step)

    model_b, opt_b = fresh()
    for step, batch in enumerate(batches):
        set_lr(opt_b, lr_at(step, cfg, len(batches)))
        loss = compute_losses(model_b(batch.input_ids_bxt), batch, cfg)["total"]
        opt_b.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(list(model_b.parameters()), cfg.grad_clip)
        opt_b.step()

    assert_same_tensors(model_a.state_dict(), model_b.state_dict())


def test_early_stopper_counts_bad_epochs_with_min_delta():
    stopper = EarlyStopper(micro(patience=2, min_delta=0.1).train)
    improved = [
        stopper.update(v, step, epoch)
        for epoch, (step, v) in enumerate([(1, 0.5), (2, 0.55), (3, 0.7), (4, 0.75), (5, 0.79)])
    ]
    assert improved == [True, False, True, False, False]
    assert stopper.state.best_value == 0.7 and stopper.state.bad_epochs == 2
    assert stopper.reason_to_stop(0.79) == "patience"


def test_history_records_validate(tmp_path):
    run = _train(micro(epochs=1), tmp_path).run_dir
    for line in (run / "logs" / "history.jsonl").read_text().splitlines():
        HistoryRecord.model_validate_json(line)


def _crash_at_step(n: int):
    hooks = Hooks()

    def crash(ctx):
        if ctx.step == n:
            raise RuntimeError("the machine went away")

    hooks.add("on_step_end", crash)
    return hooks


def test_a_run_is_resumable_from_a_step_0_checkpoint(tmp_path):
    full = _train(micro(), tmp_path / "full").run_dir
    with pytest.raises(RuntimeError, match="went away"):
        _train(micro(), tmp_path / "crashed", hooks=_crash_at_step(1))
    (run_dir,) = (tmp_path / "crashed").glob("micro/*/v1")
    assert read_ckpt(run_dir / "checkpoints" / "last.pt")[1]["meta"].count('"step":0') == 1
    resumed = resume_run(run_dir, device="cpu", progress=False)
    assert resumed.status == "completed" and resumed.steps == 12
    assert_same_tensors(_weights(full), _weights(run_dir))
    assert _history(run_dir) == _history(full)


def test_the_final_last_checkpoint_records_the_stop_decision(tmp_path):
    exp = micro(epochs=6, patience=1, min_delta=100.0)
    result = _train(exp, tmp_path)
    assert result.stop_reason == "patience" and result.steps == 8
    meta = json.loads(read_ckpt(result.run_dir / "checkpoints" / "last.pt")[1]["meta"])
    assert meta["stop_reason"] == "patience"
    best = json.loads(read_ckpt(result.run_dir / "checkpoints" / "best.pt")[1]["meta"])
    assert best["stop_reason"] is None


def test_when_recording_a_failure_fails_too_the_run_reads_as_interrupted(tmp_path, monkeypatch):
    from fsmrun.runs.run_folder import RunFolder

    real = RunFolder.set_status

    def disk_full(self, record, status, **kw):
        if status == "failed":
            raise OSError(28, "No space left on device", str(self.run_json))
        return real(self, record, status, **kw)

    monkeypatch.setattr(RunFolder, "set_status", disk_full)
    with pytest.raises(RuntimeError, match="went away"):  # the original error, not the second
        _train(micro(), tmp_path, hooks=_crash_at_step(2))
    (run_dir,) = tmp_path.glob("micro/*/v1")
    folder = RunFolder(run_dir)
    assert folder.read_record().status == "running"  # as written last
    assert folder.status() == "interrupted"  # its writer's lock is gone


def test_a_child_run_killed_before_its_first_checkpoint_restarts_from_its_parent(
    tmp_path, monkeypatch
):
    import fsmrun.train.loop as loop_module

    parent = _train(micro(epochs=2), tmp_path).run_dir
    clean = resume_run(parent, epochs=3, device="cpu", progress=False)

    def killed(*args, **kwargs):
        raise RuntimeError("killed while adopting its parent")

    with monkeypatch.context() as m:
        m.setattr(loop_module, "adopt_parent", killed)
        with pytest.raises(RuntimeError, match="adopting"):
            resume_run(parent, epochs=3, device="cpu", progress=False)
    (child,) = [p for p in clean.run_dir.parent.iterdir() if p != clean.run_dir]
    assert not (child / "checkpoints" / "last.pt").exists()
    result = resume_run(child, device="cpu", progress=False)
    assert result.status == "completed" and result.steps == 12
    assert_same_tensors(_weights(clean.run_dir), _weights(child))
    assert _history(clean.run_dir) == _history(child)
