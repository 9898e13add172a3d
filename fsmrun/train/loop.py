"""The training loop: `train_one_experiment`, `resume_run` and the flat `train` they share.
Phases: pre-flight and set-up (`session`), resume, train (steps, validation, checkpoints; every
stop decided by `decide_stop`), finish (checkpoints evaluated, metrics.json, status, index)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from fsmrun.base.faults import fault_point
from fsmrun.base.seeding import config_hash
from fsmrun.data.batching import iter_batches
from fsmrun.data.encoding import RunData
from fsmrun.runs.layout import claim_run_folder, default_results_root
from fsmrun.runs.run_folder import HEARTBEAT_S, RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import (
    EarlyStopState,
    Metrics,
    RunRecord,
    StopReason,
)
from fsmrun.train import checkpoint as ckpt
from fsmrun.train.early_stop import decide_stop, flat_metrics, update_early_stop
from fsmrun.train.evaluate import evaluate_splits
from fsmrun.train.hooks import HookContext, Hooks
from fsmrun.train.session import (
    Session,
    SessionControls,
    StopRule,
    StopSignals,
    check_resume,
    new_record,
    open_session,
    pin_threads,
    preflight,
    record_failure,
    resumed_record,
    write_static_files,
)
from fsmrun.train.state import (
    Start,
    TrainingError,
    TrainState,
    adopt_parent,
    fail_non_finite,
    finish,
    first_checkpoint,
    log_history,
    log_train,
    restore_state,
    resume_start,
    save_state,
)

log = logging.getLogger(__name__)

__all__ = ["RunResult", "SessionControls", "TrainState", "resume_run", "train_one_experiment"]


@dataclass
class RunResult:
    """What a finished (or stopped) training session leaves behind."""

    run_id: str
    run_dir: Path
    status: str
    stop_reason: StopReason | None
    metrics: Metrics | None = None
    steps: int = 0


# ---------------------------------------------------------------------------- train


def train(s: Session, state: TrainState) -> TrainState:
    """Epochs of steps from `state` until `decide_stop` says stop; returns the final state.

    Per step: one optimizer step (no host sync), progress, optional hooks; every `log_every`
    steps a history line; `last.pt` every `save_every` steps and when stopped mid-epoch. Per
    epoch: validation, early stopping, best.pt on improvement, last.pt.
    """
    cfg, controls = s.exp.train, s.controls
    wall_base, start = state.wall_time_s, time.monotonic()
    beat = start
    step_hooks = s.hooks.has("on_step_end")

    def ctx(epoch: int, val_metrics: dict[str, float] | None = None) -> HookContext:
        return HookContext(epoch, state.step, s.model, s.folder.path, val_metrics)

    with StopSignals() as signals:
        while state.stop_reason is None and state.epoch < cfg.epochs:
            # ---- the epoch's steps, from where the state stands
            epoch = state.epoch
            batches = s.epoch_order(epoch)
            if state.batch_in_epoch == 0:
                s.hooks.fire("on_epoch_start", ctx(epoch))
            s.reporter.start_epoch(epoch, cfg.epochs, len(batches), state.batch_in_epoch)
            interval_start, interval_steps = time.monotonic(), 0
            batch_iter = iter_batches(
                s.data.splits["train"],
                cfg.batch_size,
                s.exp.seed,
                epoch,
                start_step=state.batch_in_epoch,
                bucket_by_length=cfg.bucket_by_length,
            )
            for b, batch in zip(range(state.batch_in_epoch, len(batches)), batch_iter, strict=True):
                s.runner.step(batch, state.step)
                state.step += 1
                state.batch_in_epoch = b + 1
                interval_steps += 1
                s.reporter.advance()
                if step_hooks:
                    s.hooks.fire("on_step_end", ctx(epoch))
                now = time.monotonic()
                if state.step % cfg.log_every == 0:
                    log_train(s, state, interval_steps / max(now - interval_start, 1e-9))
                    interval_start, interval_steps = now, 0
                if now - beat > HEARTBEAT_S:
                    beat = now
                    s.record = s.folder.heartbeat(s.record, steps=state.step, epochs=state.epoch)
                if b + 1 == len(batches):
                    break  # the epoch's end decides
                reason = decide_stop(
                    cfg,
                    step=state.step,
                    epochs_done=epoch,
                    interrupted=signals.requested or state.step == controls.stop_at_step,
                    max_steps=controls.max_steps,
                )
                if reason is not None or (cfg.save_every and state.step % cfg.save_every == 0):
                    if s.runner.count and not bool(torch.isfinite(s.runner.sums).all()):
                        fail_non_finite(state, s.runner.drain() or {})
                    state.wall_time_s = wall_base + time.monotonic() - start
                    save_state(s, state, "last", batches[b + 1], epoch_done=False)
                if reason is not None:
                    state.stop_reason = reason
                    log_train(s, state, None)
                    s.reporter.end_epoch(f"stopped at step {state.step} ({reason})")
                    break
            if state.stop_reason is not None:
                break

            # ---- validation, early stopping, checkpoints
            log_train(s, state, None)
            val = evaluate_splits(s.model, s.data, s.exp, ["val"], s.amp_dtype)["val"]
            flat = flat_metrics("val", val)
            if cfg.monitor not in flat:
                raise TrainingError(
                    f"train.monitor {cfg.monitor!r} is not a validation metric; "
                    f"choose one of {', '.join(sorted(flat))}"
                )
            value = flat[cfg.monitor]
            state.early_stop, improved = update_early_stop(
                state.early_stop, cfg, value, state.step, epoch
            )
            log_history(s, state, "eval", metrics=flat, improved=improved)
            s.hooks.fire("on_validation_end", ctx(epoch, flat))
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            reason = decide_stop(
                cfg,
                step=state.step,
                epochs_done=state.epoch,
                interrupted=signals.requested or state.step == controls.stop_at_step,
                max_steps=controls.max_steps,
                early_stop=state.early_stop,
                value=value,
            )
            state.wall_time_s = wall_base + time.monotonic() - start
            if improved:
                save_state(s, state, "best", None, epoch_done=True, val_metrics=flat)
            goes_on = reason in (None, "interrupted")
            next_batch = s.epoch_order(state.epoch)[0] if goes_on else None
            state.stop_reason = None if goes_on else reason  # last.pt records the decision
            save_state(s, state, "last", next_batch, epoch_done=True, val_metrics=flat)
            s.hooks.fire("on_epoch_end", ctx(epoch, flat))
            mark = "*" if improved else " "
            s.reporter.end_epoch(
                f"epoch {epoch + 1:>3}/{cfg.epochs}  step {state.step:>6}  "
                f"{cfg.monitor} {value:.4f}{mark} best {state.early_stop.best_value:.4f}  "
                f"val nll {flat['val.nll']:.4f}  class {flat['val.class_acc']:.4f}"
            )
            state.stop_reason = reason
    state.stop_reason = state.stop_reason or decide_stop(
        cfg, step=state.step, epochs_done=state.epoch
    )
    state.wall_time_s = wall_base + time.monotonic() - start
    return state


# ---------------------------------------------------------------------------- finish


def run_session(s: Session, start: Start) -> RunResult:
    """Train (from the start's checkpoint, or a step-0 one), then finish; statuses honest."""
    cfg = s.exp.train
    state = TrainState(EarlyStopState(monitor=cfg.monitor, mode=cfg.monitor_mode))
    try:
        if start.checkpoint is not None:
            state = restore_state(s, start.checkpoint, same_config=start.parent is None)
            if start.parent is not None:
                adopt_parent(s, start.parent, start.checkpoint, state)
        else:
            first_checkpoint(s, state)
        amp = f"  amp {str(s.amp_dtype).removeprefix('torch.')}" if s.amp_dtype else ""
        s.reporter.info(f"[bold]{s.record.run_id}[/]  {s.model.summary()}  device {s.device}{amp}")
        state = train(s, state)
    except TrainingError as err:
        s.reporter.end_epoch(f"[red]{err}[/]")
        state.stop_reason = state.stop_reason or "non_finite"
        state.message = str(err)
        log_history(s, state, "stop", stop_reason=state.stop_reason, message=state.message)
        try:
            metrics = finish(s, state)
        except ckpt.CheckpointError:
            metrics = None
        s.set_status(state, "failed", error=str(err))
        return RunResult(
            s.record.run_id, s.folder.path, "failed", state.stop_reason, metrics, state.step
        )
    except BaseException as err:
        s.reporter.end_epoch("")
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        s.record = s.record.model_copy(update={"steps": state.step, "epochs": state.epoch})
        record_failure(
            s.folder, s.record, status, f"{type(err).__name__}: {err}", index=s.controls.index
        )
        raise
    finally:
        try:
            s.history.sync()
        except OSError as err:
            log.warning("%s", err)
    log_history(s, state, "stop", stop_reason=state.stop_reason, message=state.message)
    if state.stop_reason == "interrupted":
        s.set_status(state, "interrupted")
        return RunResult(
            s.record.run_id, s.folder.path, "interrupted", "interrupted", None, state.step
        )
    metrics = finish(s, state)
    fault_point("metrics_written")
    s.set_status(state, "completed")
    s.history.close()
    return RunResult(
        s.record.run_id, s.folder.path, "completed", state.stop_reason, metrics, state.step
    )


# ---------------------------------------------------------------------------- entry points


def train_one_experiment(
    exp: ExperimentConfig,
    *,
    device: str = "auto",
    results_root: str | Path | None = None,
    overwrite: bool = False,
    hooks: Hooks | None = None,
    command: list[str] | None = None,
    console: Console | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    stop_at_step: int | None = None,
    index: bool = True,
) -> RunResult:
    """Train `exp` from scratch into a new run folder and return where it landed.

    Pre-flight first (device, writable results folder, language, corpus: a UserError before
    any run folder is claimed), then `<root>/<experiment>/<hash12>/v<N>/` is claimed (with
    run.json and config.json, under its lock) and trained from a step-0 checkpoint.
    `max_steps` ends training early (audits); `stop_at_step` behaves like an interruption
    after that step (tests of exact resume). `index=False` leaves the SQLite index alone
    (sweep workers: the coordinator indexes the folder).
    """
    controls = SessionControls(hooks, console, progress, max_steps, stop_at_step, index)
    root = default_results_root(results_root)
    torch_device, data = preflight(exp, device, root)
    return _new_run(exp, root, torch_device, controls, data, command, Start(), overwrite)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    early_stop: bool = True,
    device: str = "auto",
    results_root: str | Path | None = None,
    hooks: Hooks | None = None,
    command: list[str] | None = None,
    console: Console | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    stop_at_step: int | None = None,
    index: bool = True,
) -> RunResult:
    """Continue the run in `run_dir` exactly where it stopped, or extend a completed one.

    The resume rules apply (`session.check_resume`): an interrupted or failed run continues in
    place from its last checkpoint, as it was (checked before anything is written); a completed
    one is extended, given a new stopping rule (`epochs` above its limit, `patience`, or
    `early_stop=False`), into a NEW run (its own config hash and version, run.json naming the
    parent and step) that starts from the parent's last checkpoint; the parent is not touched.
    A run whose writer holds its lock is refused. `index` as for `train_one_experiment`.
    """
    controls = SessionControls(hooks, console, progress, max_steps, stop_at_step, index)
    folder = RunFolder(run_dir)
    old, exp, extend = check_resume(folder, rule=StopRule(epochs, patience, early_stop))
    root = Path(results_root) if results_root is not None else folder.results_root
    start = resume_start(folder, old, root, extend=extend)
    pin_threads(start.parent or folder)  # the thread count the run trained with
    torch_device, data = preflight(exp, device, root)
    if controls.console is not None:  # every check passed: say what happens now
        what = "extending {} into a new run" if extend else f"resuming {{}} ({folder.status()})"
        controls.console.print(f"{what.format(old.run_id)} from {folder.path}", markup=False)
    if extend:
        return _new_run(exp, root, torch_device, controls, data, command, start, False)
    with folder.lock():
        fallback = start.checkpoint.fallback if start.checkpoint else None
        record = resumed_record(old, torch_device, command, fallback)
        return _launch(exp, folder, record, torch_device, controls, data, start)


def _new_run(
    exp: ExperimentConfig,
    root: Path,
    device: torch.device,
    controls: SessionControls,
    data: RunData | None,
    command: list[str] | None,
    start: Start,
    overwrite: bool,
) -> RunResult:
    """Claim a new run folder (run.json and config.json in it from its first moment), run."""
    parent = None
    if start.parent is not None and start.checkpoint is not None:
        parent = (start.parent.read_record().run_id, start.checkpoint.meta.step)

    def make_files(folder: RunFolder, version: int) -> None:
        folder.write_record(new_record(exp, version, device, command, parent))
        folder.write_config(exp)

    folder = claim_run_folder(root, exp.name, config_hash(exp), make_files, overwrite=overwrite)
    try:
        return _launch(exp, folder, folder.read_record(), device, controls, data, start)
    finally:
        folder.release_lock()


def _launch(
    exp: ExperimentConfig,
    folder: RunFolder,
    record: RunRecord,
    device: torch.device,
    controls: SessionControls,
    data: RunData | None,
    start: Start,
) -> RunResult:
    """Under the folder's lock (held until the last write): the running record, set-up (a
    failure marks the run failed), static files unless resuming in place, run."""
    with folder.lock():
        record = folder.write_record(record)
        try:
            s = open_session(exp, folder, record, device, controls, data)
            if start.checkpoint is None or start.parent is not None:
                write_static_files(s)
        except BaseException as err:
            record_failure(
                folder, record, "failed", f"{type(err).__name__}: {err}", index=controls.index
            )
            raise
        s.update_index()
        return run_session(s, start)
