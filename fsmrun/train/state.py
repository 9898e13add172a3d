"""The training state (exactly what a checkpoint's meta holds): saving and restoring it with the
model, optimizer, scaler, RNG states and running sums; history lines; the final metrics."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsmrun._version import __version__
from fsmrun.base.errors import FsmrunError, UserError
from fsmrun.base.faults import fault_point
from fsmrun.base.hashing import config_hash
from fsmrun.base.io import atomic_write_bytes
from fsmrun.data.batching import batch_fingerprint
from fsmrun.runs.layout import resolve_run
from fsmrun.runs.run_folder import CheckpointName, RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import (
    CheckpointEval,
    CheckpointMeta,
    EarlyStopState,
    HistoryRecord,
    Metrics,
    RunRecord,
    StopReason,
)
from fsmrun.train import checkpoint as ckpt
from fsmrun.train.evaluate import evaluate_checkpoint
from fsmrun.train.history import read_history_lines
from fsmrun.train.session import Session

# Stops decided by the run's own rule: recorded in last.pt, so a resume after a kill that
# came before 'completed' goes straight to finishing.
RULE_STOPS = ("max_epochs", "patience", "threshold")


class TrainingError(FsmrunError):
    """Training could not go on (non-finite loss, resume mismatch); the run is marked failed."""


@dataclass
class TrainState:
    """Where training stands: what a checkpoint's meta records beside the weights and RNGs
    (step, epoch, position in it, wall time, early stopping, history length), and why it ended."""

    early_stop: EarlyStopState
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    wall_time_s: float = 0.0
    history_len: int = 0
    stop_reason: StopReason | None = None
    message: str | None = None


def save_state(
    session: Session,
    state: TrainState,
    name: CheckpointName,
    next_batch: np.ndarray | None,
    *,
    epoch_done: bool,
    val_metrics: dict[str, float] | None = None,
) -> None:
    """Write checkpoint `name` (last or best) holding `state`; history made durable first."""
    session.history.sync()
    state.history_len = session.history.count
    fingerprint = batch_fingerprint(next_batch) if next_batch is not None else None
    meta = CheckpointMeta(
        kind=name,
        step=state.step,
        epoch=state.epoch,
        batch_in_epoch=state.batch_in_epoch,
        epoch_done=epoch_done,
        history_len=state.history_len,
        next_batch_fingerprint=fingerprint,
        early_stop=state.early_stop,
        config_hash=session.config_hash,
        fsmrun_version=__version__,
        wall_time_s=state.wall_time_s,
        val_metrics=val_metrics,
        stop_reason=state.stop_reason if state.stop_reason in RULE_STOPS else None,
    )
    ckpt.save_ckpt(
        session.folder.checkpoint(name),
        session.model,
        session.optimizer,
        meta=meta,
        config_json=session.exp.model_dump_json(),
        scaler=session.scaler,
        running=session.runner.running_state(),
    )


@dataclass(frozen=True)
class Start:
    """Where a session starts: a verified checkpoint (None: step 0), and for a child run the
    parent folder it came from."""

    checkpoint: ckpt.VerifiedCheckpoint | None = None
    parent: RunFolder | None = None


def resume_start(folder: RunFolder, record: RunRecord, root: Path, *, extend: bool) -> Start:
    """Where a resume of `folder` starts: its own last checkpoint, in place; for an extension,
    the same checkpoint as the parent of a new run; a child killed before its first last.pt
    starts again from its parent's. CheckpointError when an extension has nothing to start from.
    """
    start = Start(verified_start(folder), folder if extend else None)
    if not extend and start.checkpoint is None and record.parent_run is not None:
        parent = RunFolder(resolve_run(root, record.parent_run))
        start = Start(verified_start(parent), parent)
    if start.checkpoint is None and start.parent is not None:
        raise ckpt.CheckpointError(f"{start.parent.path} has no last.pt to extend")
    return start


def verified_start(folder: RunFolder) -> ckpt.VerifiedCheckpoint | None:
    """The checkpoint a resume of `folder` starts from, read and checked before anything in
    the folder is touched: last.pt (or its .prev copy, with a warning), and a history.jsonl
    holding every line it counted. None when the run died before its step-0 checkpoint (it
    then starts over at step 0). UserError when it cannot continue exactly."""
    if not folder.has_checkpoint("last"):
        return None
    verified = ckpt.verify_ckpt(folder.checkpoint("last"))
    complete = len(read_history_lines(folder.history))
    if complete < verified.meta.history_len:
        raise UserError(
            f"{folder.history} holds {complete} complete lines but the checkpoint at step "
            f"{verified.meta.step} counted {verified.meta.history_len}: it was cut or damaged "
            "after the save, so the run cannot continue exactly; train it anew"
        )
    return verified


def restore_state(
    session: Session, verified: ckpt.VerifiedCheckpoint, *, same_config: bool = True
) -> TrainState:
    """Continue from a verified checkpoint: weights, optimizer, RNG, position, stop decision.
    `same_config`: the checkpoint must belong to this configuration (not so for a child run,
    which starts from its parent's)."""
    loaded = ckpt.apply_ckpt(
        verified, session.model, session.optimizer, scaler=session.scaler, restore_rng=True
    )
    meta = loaded.meta
    saved = ExperimentConfig.model_validate_json(loaded.config_json)
    extended = saved.model_copy(
        update={"train": saved.train.model_copy(update={"epochs": session.exp.train.epochs})}
    )
    if same_config and config_hash(extended) != session.config_hash:
        raise TrainingError(
            f"{loaded.path}: checkpoint belongs to another configuration "
            f"({meta.config_hash[:12]} vs {session.config_hash[:12]})"
        )
    session.runner.load_running_state(loaded.running)
    if same_config:
        session.history.truncate(meta.history_len)
    if meta.batch_in_epoch < session.steps_per_epoch and meta.next_batch_fingerprint:
        index = session.epoch_order(meta.epoch)[meta.batch_in_epoch]
        if batch_fingerprint(index) != meta.next_batch_fingerprint:
            raise TrainingError(
                f"{loaded.path}: the next batch differs from the one recorded at save time "
                "(corpus or batching changed); cannot resume exactly"
            )
    return TrainState(
        meta.early_stop,
        meta.step,
        meta.epoch,
        meta.batch_in_epoch,
        meta.wall_time_s,
        meta.history_len,
        stop_reason=meta.stop_reason if same_config else None,
    )


def first_checkpoint(session: Session, state: TrainState) -> None:
    """last.pt at step 0 (history emptied): from here on the run can always be resumed."""
    session.history.truncate(0)
    save_state(session, state, "last", session.epoch_order(0)[0], epoch_done=False)


def adopt_parent(
    session: Session, parent: RunFolder, verified: ckpt.VerifiedCheckpoint, state: TrainState
) -> None:
    """A child run's first moment, `state` restored from its parent's last.pt: the parent's
    history up to that checkpoint, its best.pt, and last.pt under the child's configuration."""
    session.history.rewrite(read_history_lines(parent.history)[: verified.meta.history_len])
    if parent.has_checkpoint("best"):
        best = ckpt.verify_ckpt(parent.checkpoint("best"))
        atomic_write_bytes(session.folder.checkpoint("best"), best.path.read_bytes())
    meta = verified.meta
    going_on = meta.batch_in_epoch < session.steps_per_epoch
    next_batch = session.epoch_order(meta.epoch)[meta.batch_in_epoch] if going_on else None
    save_state(session, state, "last", next_batch, epoch_done=meta.epoch_done)


def finish(session: Session, state: TrainState) -> Metrics | None:
    """Evaluate best and last checkpoints and write metrics.json (None without them)."""
    if not session.folder.has_checkpoint("last"):
        return None
    splits = [split for split in session.data.splits if split != "train"]

    def evaluated(name: CheckpointName) -> CheckpointEval:
        path = session.folder.checkpoint(name)
        meta, results = evaluate_checkpoint(path, session.exp, session.data, session.device, splits)
        return CheckpointEval(step=meta.step, epoch=meta.epoch, **results)

    last = evaluated("last")
    fault_point("final_eval")
    best = evaluated("best") if session.folder.checkpoint("best").exists() else last
    metrics = Metrics(
        run_id=session.record.run_id,
        experiment=session.exp.name,
        monitor=session.exp.train.monitor,
        stop_reason=state.stop_reason or "max_epochs",
        steps=state.step,
        epochs=state.epoch,
        wall_time_s=round(state.wall_time_s, 3),
        early_stop=state.early_stop,
        best=best,
        last=last,
        evaluated=session.exp.train.evaluate_checkpoint,
    )
    session.folder.write_metrics(metrics)
    return metrics


def log_history(session: Session, state: TrainState, kind: str, **fields: object) -> None:
    session.history.append(
        HistoryRecord(kind=kind, step=state.step, epoch=state.epoch, time=time.time(), **fields)
    )


def log_train(session: Session, state: TrainState, steps_per_s: float | None) -> None:
    """One history line of the mean losses since the last one (the loop's one host sync)."""
    means = session.runner.drain()
    if means is None:
        return
    if not all(math.isfinite(v) for v in means.values()):
        fail_non_finite(state, means)
    grad_norm = means.pop("grad_norm")
    log_history(
        session,
        state,
        "train",
        losses=means,
        lr=session.runner.last_lr,
        grad_norm=grad_norm,
        steps_per_s=steps_per_s,
    )
    session.display.show_loss(means["total"], steps_per_s)


def fail_non_finite(state: TrainState, means: dict[str, float]) -> None:
    bad = ", ".join(f"{k}={v}" for k, v in means.items() if not math.isfinite(v))
    state.stop_reason = "non_finite"
    state.message = (
        f"non-finite training statistics before step {state.step} ({bad}); "
        "lower train.lr or set train.grad_clip; the last good checkpoint is kept"
    )
    raise TrainingError(state.message)
