"""The training loop: `train_one_experiment`, `resume_run` and the flat `train` they share.
Phases: pre-flight and set-up (`session`), resume, train (steps, validation, checkpoints; every
stop decided by `decide_stop`), finish (checkpoints evaluated, metrics.json, status, index)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fsmrun.base.faults import fault_point
from fsmrun.data.batching import gather_batches
from fsmrun.data.stream import iter_stream_batches
from fsmrun.runs.layout import claim_run_folder, default_results_root
from fsmrun.runs.run_folder import HEARTBEAT_S, RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import (
    EarlyStopState,
    Metrics,
    RunLabels,
    RunRecord,
    StopReason,
)
from fsmrun.train import checkpoint as ckpt
from fsmrun.train.early_stop import (
    decide_stop,
    extension_warning,
    flat_metrics,
    update_early_stop,
)
from fsmrun.train.evaluate import evaluate_splits
from fsmrun.train.hooks import HookContext
from fsmrun.train.session import (
    Plan,
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

__all__ = ["RunResult", "resume_run", "train_one_experiment"]


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


def train(session: Session, state: TrainState) -> TrainState:
    """Epochs of steps from `state` until `decide_stop` says stop; returns the final state.

    Per step: one optimizer step (no host sync), progress, optional hooks; every `log_every`
    steps a history line; `last.pt` every `save_every` steps and when stopped mid-epoch. Per
    epoch: validation, early stopping, best.pt on improvement, last.pt. Each epoch's batch
    order is computed once (`Session.epoch_order`) and serves its steps and its checkpoints.
    """
    cfg, controls = session.exp.train, session.controls
    train_split = session.data.splits["train"]
    wall_base, start = state.wall_time_s, time.monotonic()
    beat = start
    step_hooks = session.hooks.has("on_step_end")

    def ctx(epoch: int, val_metrics: dict[str, float] | None = None) -> HookContext:
        return HookContext(epoch, state.step, session.model, session.folder.path, val_metrics)

    with StopSignals() as signals:

        def stop_reason(
            epochs_done: int, early_stop: EarlyStopState | None = None, value: float | None = None
        ) -> StopReason | None:
            """The one stop decision: between steps, after a validation (`early_stop`, `value`)
            and when the epochs ran out before the loop began."""
            return decide_stop(
                cfg,
                step=state.step,
                epochs_done=epochs_done,
                interrupted=signals.requested or state.step == controls.stop_at_step,
                max_steps=controls.max_steps,
                early_stop=early_stop,
                value=value,
            )

        while state.stop_reason is None and state.epoch < cfg.epochs:
            # ---- the epoch's steps, from where the state stands
            epoch = state.epoch
            batches = session.epoch_order(epoch)
            if state.batch_in_epoch == 0:
                session.hooks.fire("on_epoch_start", ctx(epoch))
            session.display.start_epoch(epoch, cfg.epochs, len(batches), state.batch_in_epoch)
            interval_start, interval_steps = time.monotonic(), 0
            if cfg.sampling == "stream":  # fresh draws, a function of (seed, step)
                data = session.data
                batch_iter = iter_stream_batches(
                    batches, state.batch_in_epoch, data.dfa, data.vocab, session.device, data.task
                )
            else:
                batch_iter = gather_batches(train_split, batches, state.batch_in_epoch)
            steps = zip(range(state.batch_in_epoch, len(batches)), batch_iter, strict=True)
            for b, batch in steps:
                session.runner.step(batch, state.step)
                state.step += 1
                state.batch_in_epoch = b + 1
                interval_steps += 1
                session.display.advance()
                if step_hooks:
                    session.hooks.fire("on_step_end", ctx(epoch))
                now = time.monotonic()
                if state.step % cfg.log_every == 0:
                    log_train(session, state, interval_steps / max(now - interval_start, 1e-9))
                    interval_start, interval_steps = now, 0
                if now - beat > HEARTBEAT_S:
                    beat = now
                    session.record = session.folder.heartbeat(
                        session.record, steps=state.step, epochs=state.epoch
                    )
                if b + 1 == len(batches):
                    break  # the epoch's end decides
                reason = stop_reason(epoch)
                if reason is not None or (cfg.save_every and state.step % cfg.save_every == 0):
                    if session.runner.count and not bool(torch.isfinite(session.runner.sums).all()):
                        fail_non_finite(state, session.runner.drain() or {})
                    state.wall_time_s = wall_base + time.monotonic() - start
                    save_state(session, state, "last", batches[b + 1], epoch_done=False)
                if reason is not None:
                    state.stop_reason = reason
                    log_train(session, state, None)
                    session.display.end_epoch(f"stopped at step {state.step} ({reason})")
                    break
            if state.stop_reason is not None:
                break

            # ---- validation, early stopping, checkpoints
            log_train(session, state, None)
            val = evaluate_splits(
                session.model, session.data, session.exp, ["val"], session.amp_dtype
            )["val"]
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
            log_history(session, state, "eval", metrics=flat, improved=improved)
            session.hooks.fire("on_validation_end", ctx(epoch, flat))
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            reason = stop_reason(state.epoch, early_stop=state.early_stop, value=value)
            state.wall_time_s = wall_base + time.monotonic() - start
            if improved:
                save_state(session, state, "best", None, epoch_done=True, val_metrics=flat)
            goes_on = reason in (None, "interrupted")
            next_batch = session.epoch_order(state.epoch)[0] if goes_on else None
            state.stop_reason = None if goes_on else reason  # last.pt records the decision
            save_state(session, state, "last", next_batch, epoch_done=True, val_metrics=flat)
            session.hooks.fire("on_epoch_end", ctx(epoch, flat))
            mark = "*" if improved else " "
            session.display.end_epoch(
                f"epoch {epoch + 1:>3}/{cfg.epochs}  step {state.step:>6}  "
                f"{cfg.monitor} {value:.4f}{mark} best {state.early_stop.best_value:.4f}  "
                f"val nll {flat['val.nll']:.4f}  class {flat['val.class_acc']:.4f}"
            )
            state.stop_reason = reason
        state.stop_reason = state.stop_reason or stop_reason(state.epoch)
    state.wall_time_s = wall_base + time.monotonic() - start
    return state


# ---------------------------------------------------------------------------- finish


def run_session(session: Session, start: Start) -> RunResult:
    """Train (from the start's checkpoint, or a step-0 one), then finish; statuses honest:
    whatever stops the process after the run is set up (Ctrl-C during the final evaluation
    included) leaves run.json interrupted or failed, never running."""
    cfg = session.exp.train
    state = TrainState(EarlyStopState(monitor=cfg.monitor, mode=cfg.monitor_mode))
    try:
        if start.checkpoint is not None:
            state = restore_state(session, start.checkpoint, same_config=start.parent is None)
            if start.parent is not None:
                adopt_parent(session, start.parent, start.checkpoint, state)
        else:
            first_checkpoint(session, state)
        amp = f"  amp {str(session.amp_dtype).removeprefix('torch.')}" if session.amp_dtype else ""
        session.display.info(
            f"[bold]{session.record.run_id}[/]  {session.model.summary()}  "
            f"device {session.device}{amp}"
        )
        try:
            state = train(session, state)
        finally:
            try:
                session.history.sync()
            except OSError as err:
                log.warning("%s", err)
        return _finish_run(session, state)
    except TrainingError as err:
        return _finish_failed_run(session, state, err)
    except BaseException as err:
        _record_abort(session, state, err)
        raise


def _result(session: Session, state: TrainState, status: str, metrics: Metrics | None) -> RunResult:
    return RunResult(
        session.record.run_id, session.folder.path, status, state.stop_reason, metrics, state.step
    )


def _finish_run(session: Session, state: TrainState) -> RunResult:
    """The stop line, the final evaluation and metrics.json, then the status."""
    log_history(session, state, "stop", stop_reason=state.stop_reason, message=state.message)
    if state.stop_reason == "interrupted":
        session.set_status("interrupted", steps=state.step, epochs=state.epoch)
        return _result(session, state, "interrupted", None)
    metrics = finish(session, state)
    fault_point("metrics_written")
    session.set_status("completed", steps=state.step, epochs=state.epoch)
    session.history.close()
    return _result(session, state, "completed", metrics)


def _finish_failed_run(session: Session, state: TrainState, err: TrainingError) -> RunResult:
    """A run that failed by itself (a non-finite loss): evaluated as far as it got, failed."""
    try:
        session.display.end_epoch(f"[red]{err}[/]")
        state.stop_reason = state.stop_reason or "non_finite"
        state.message = str(err)
        log_history(session, state, "stop", stop_reason=state.stop_reason, message=state.message)
        try:
            metrics = finish(session, state)
        except ckpt.CheckpointError:
            metrics = None
        session.set_status("failed", steps=state.step, epochs=state.epoch, error=str(err))
        session.history.close()
    except BaseException as abort:
        _record_abort(session, state, abort)
        raise
    return _result(session, state, "failed", metrics)


def _record_abort(session: Session, state: TrainState, err: BaseException) -> None:
    """Ctrl-C (interrupted) or an unexpected error (failed), recorded in run.json."""
    session.display.end_epoch("")
    status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    session.record = session.record.model_copy(update={"steps": state.step, "epochs": state.epoch})
    error = f"{type(err).__name__}: {err}"
    record_failure(session.folder, session.record, status, error, index=session.controls.index)


# ---------------------------------------------------------------------------- entry points


def train_one_experiment(
    exp: ExperimentConfig,
    controls: SessionControls | None = None,
    *,
    results_root: str | Path | None = None,
    overwrite: bool = False,
    labels: RunLabels | None = None,
    **options: Any,
) -> RunResult:
    """Train `exp` from scratch into a new run folder and return where it landed.

    `controls` says how (device, hooks, console, progress, early exits, index, command); its
    fields may be given as keywords instead (`device="cpu", progress=False`), which build it.
    Pre-flight first (device, language, writable results folder, corpus: a UserError before
    any run folder is claimed), then `<root>/<experiment>/<hash12>/v<N>/` is claimed (with
    run.json and config.json, under its lock) and trained from a step-0 checkpoint. `labels`
    (tags, note) are written to labels.json with run.json, from the run's first moment.
    """
    controls = _controls(controls, options)
    root = default_results_root(results_root)
    return _new_run(preflight(exp, controls, root), root, Start(), overwrite, labels)


def resume_run(
    run_dir: str | Path,
    controls: SessionControls | None = None,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    early_stop: bool = True,
    results_root: str | Path | None = None,
    **options: Any,
) -> RunResult:
    """Continue the run in `run_dir` exactly where it stopped, or extend a completed one.

    The resume rules apply (`session.check_resume`): an interrupted or failed run continues in
    place from its last checkpoint, as it was (checked before anything is written); a completed
    one is extended, given a new stopping rule (`epochs` above its limit, `patience`, or
    `early_stop=False`), into a NEW run (its own config hash and version, run.json naming the
    parent and step) that starts from the parent's last checkpoint; the parent is not touched.
    A run whose writer holds its lock is refused. `controls` (or its fields as keywords) as
    for `train_one_experiment`.
    """
    controls = _controls(controls, options)
    folder = RunFolder(run_dir)
    old, exp, extend = check_resume(folder, rule=StopRule(epochs, patience, early_stop))
    root = Path(results_root) if results_root is not None else folder.results_root
    start = resume_start(folder, old, root, extend=extend)
    pin_threads(start.parent or folder)  # the thread count the run trained with
    plan = preflight(exp, controls, root)

    def say(what: str) -> None:  # every check passed: say what happens now
        if controls.console is not None:
            controls.console.print(f"{what} from {folder.path}", markup=False)

    if extend:
        parent_metrics = folder.read_metrics()
        if parent_metrics is not None and (
            warning := extension_warning(exp.train, parent_metrics.early_stop, old.epochs)
        ):
            log.warning("%s", warning)
        say(f"extending {old.run_id} into a new run")
        return _new_run(plan, root, start, overwrite=False)
    status = folder.status()  # before taking the lock, which this process then holds
    with folder.lock():
        say(f"resuming {old.run_id} ({status})")
        fallback = start.checkpoint.fallback if start.checkpoint else None
        return _launch(plan, folder, resumed_record(old, plan, fallback), start)


def _controls(controls: SessionControls | None, options: dict[str, Any]) -> SessionControls:
    """The one SessionControls of a call: the object given, or one built from its fields given
    as keywords (TypeError naming a keyword that is no field; not both)."""
    if controls is not None and options:
        raise TypeError(f"pass either controls or its fields, not both ({', '.join(options)})")
    return controls if controls is not None else SessionControls(**options)


def _new_run(
    plan: Plan, root: Path, start: Start, overwrite: bool, labels: RunLabels | None = None
) -> RunResult:
    """Claim a new run folder (run.json, config.json and any labels in it from its first
    moment), run."""
    parent = None
    if start.parent is not None and start.checkpoint is not None:
        parent = (start.parent.read_record().run_id, start.checkpoint.meta.step)

    def make_files(folder: RunFolder, version: int) -> None:
        folder.write_record(new_record(plan, version, parent))
        folder.write_config(plan.exp)
        if labels is not None and labels != RunLabels():
            folder.write_labels(labels)

    folder = claim_run_folder(
        root, plan.exp.name, plan.config_hash, make_files, overwrite=overwrite
    )
    try:
        return _launch(plan, folder, folder.read_record(), start)
    finally:
        folder.release_lock()


def _launch(plan: Plan, folder: RunFolder, record: RunRecord, start: Start) -> RunResult:
    """Under the folder's lock (held until the last write): the running record, set-up (a
    failure marks the run failed), static files unless resuming in place, run."""
    with folder.lock():
        record = folder.write_record(record)
        try:
            session = open_session(plan, folder, record)
            if start.checkpoint is None or start.parent is not None:
                write_static_files(session)
        except BaseException as err:
            error = f"{type(err).__name__}: {err}"
            record_failure(folder, record, "failed", error, index=plan.controls.index)
            raise
        session.update_index()
        return run_session(session, start)
