"""The training loop: `train_one_experiment` and `resume_run`.

Plain phases: setup (seed, DFA, corpus, tensors, model, optimizer, run folder), resume (from
last.pt), train (epochs of steps, validation, early stopping, checkpoints), finish (best and
last checkpoints on val/test/test_ood, metrics.json, run.json, index).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

import fsmrun
from fsmrun.core import checkpoint as ckpt
from fsmrun.core.checkpoint import BEST, LAST
from fsmrun.core.dataset import (
    RunData,
    batch_fingerprint,
    batch_order_hash,
    build_data,
    epoch_batches,
    iter_batches,
    steps_per_epoch,
)
from fsmrun.core.determinism import config_hash, hash_state_dict, set_seed, torch_generator
from fsmrun.core.early_stop import EarlyStopper, flat_metrics
from fsmrun.core.env import amp_dtype_for, collect_env, resolve_device
from fsmrun.core.evaluate import evaluate_checkpoint, evaluate_splits
from fsmrun.core.hooks import CaptureHook, HookContext, Hooks
from fsmrun.core.io import atomic_write_json, atomic_write_text
from fsmrun.core.logging import ConsoleReporter, HistoryWriter
from fsmrun.core.model import build_model
from fsmrun.core.optim import optimizer_from_config
from fsmrun.core.registry import (
    RegistryError,
    RegistryIndex,
    allocate_run_dir,
    default_results_root,
    read_run_record,
    run_id_for,
    write_run_record,
)
from fsmrun.core.step import StepRunner
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import (
    CheckpointEval,
    CheckpointMeta,
    HistoryRecord,
    Metrics,
    RunHashes,
    RunRecord,
    StopReason,
)

HEARTBEAT_S = 10.0


class TrainingError(RuntimeError):
    """Training could not go on (non-finite loss, resume mismatch); the run is marked failed."""


@dataclass
class RunResult:
    """What a finished (or stopped) training session leaves behind."""

    run_id: str
    run_dir: Path
    status: str
    stop_reason: StopReason | None
    metrics: Metrics | None = None
    steps: int = 0


class _GracefulStop:
    """SIGINT/SIGTERM set a flag checked between steps; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


@dataclass
class _Position:
    """Where training stands; what a checkpoint's meta records."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    wall_time_s: float = 0.0
    stop_reason: StopReason | None = None
    message: str | None = None


@dataclass(frozen=True)
class SessionControls:
    """How a session runs, apart from the experiment: hooks, display, early exits."""

    hooks: Hooks | None = None
    console: Console | None = None
    progress: bool = True
    max_steps: int | None = None
    stop_at_step: int | None = None
    index: bool = True  # False: leave the SQLite index to the caller (sweep workers)


class _Session:
    """One training session over one run folder (fresh or resumed)."""

    def __init__(
        self,
        exp: ExperimentConfig,
        run_dir: Path,
        record: RunRecord,
        *,
        device: torch.device,
        results_root: Path,
        controls: SessionControls,
        data: RunData | None = None,
    ) -> None:
        self.data = data
        self.exp = exp
        self.cfg = exp.train
        self.run_dir = run_dir
        self.record = record
        self.device = device
        self.results_root = results_root
        self.hooks = controls.hooks or Hooks()
        self.reporter = ConsoleReporter(controls.console, enabled=controls.progress)
        self.max_steps = controls.max_steps
        self.stop_at_step = controls.stop_at_step
        self.amp_dtype = amp_dtype_for(device, self.cfg.amp)
        self.pos = _Position()
        self.index = RegistryIndex(results_root)
        self.use_index = controls.index
        self.config_json = exp.model_dump_json()

    # ---- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        set_seed(self.exp.seed, self.cfg.deterministic)
        if self.data is None:
            self.data = build_data(self.exp, self.device, self.results_root)
        self.model = build_model(
            self.exp.model,
            self.data.vocab.size,
            self.data.dfa.num_states,
            generator=torch_generator(self.exp.seed, "init"),
        ).to(self.device)
        self.init_hash = hash_state_dict(self.model)
        self.optimizer = optimizer_from_config(self.model, self.cfg)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.n_train = self.data.splits["train"].num_strings
        self.steps_per_epoch = steps_per_epoch(self.n_train, self.cfg.batch_size)
        self.runner = StepRunner(
            self.model,
            self.optimizer,
            self.cfg,
            self.cfg.epochs * self.steps_per_epoch,
            amp_dtype=self.amp_dtype,
            scaler=self.scaler,
        )
        self.early = EarlyStopper(self.cfg)
        self.history = HistoryWriter(self.run_dir / "logs" / "history.jsonl")
        if self.cfg.capture_epochs:
            self._add_capture_hook()

    def _add_capture_hook(self) -> None:
        val = self.data.splits["val"]
        index = np.arange(min(self.cfg.capture_batch_size, val.num_strings))
        batch = val.batch(index)
        strings = [self.data.vocab.decode(row.tolist()) for row in batch.input_ids_bxt.cpu()]
        self.hooks.add(
            "on_epoch_end",
            CaptureHook(
                batch.input_ids_bxt, val.lengths_np[index], strings, self.cfg.capture_epochs
            ),
        )

    def write_static_files(self) -> None:
        """config.json, fsm.json, fsm.dot, env.json and the hashes in run.json."""
        atomic_write_text(self.run_dir / "config.json", self.exp.model_dump_json(indent=2) + "\n")
        atomic_write_text(self.run_dir / "fsm.json", self.data.dfa.to_json() + "\n")
        atomic_write_text(self.run_dir / "fsm.dot", self.data.dfa.to_dot())
        env = collect_env(self.device, self.exp.seed, self.cfg.deterministic, self.amp_dtype)
        atomic_write_json(self.run_dir / "env.json", env)
        first_epoch = self._epoch_batches(0)
        self.record = self.record.model_copy(
            update={
                "hashes": RunHashes(
                    config=config_hash(self.exp),
                    init_weights=self.init_hash,
                    corpus=self.data.corpus_hash,
                    batch_order=batch_order_hash(first_epoch),
                ),
                "model_summary": self.model.summary(),
                "parameter_count": self.model.parameter_count(),
            }
        )
        self._write_record()

    # ---- resume ------------------------------------------------------------------------
    def restore(self) -> None:
        """Continue from last.pt (or its .prev copy): weights, optimizer, RNG, position."""
        loaded = ckpt.load_ckpt(
            self.run_dir / "checkpoints" / LAST,
            self.model,
            self.optimizer,
            scaler=self.scaler,
            restore_rng=True,
        )
        meta = loaded.meta
        if meta.config_hash != config_hash(self.exp) and not self._only_epochs_changed(loaded):
            raise TrainingError(
                f"{loaded.path}: checkpoint belongs to another configuration "
                f"({meta.config_hash[:12]} vs {config_hash(self.exp)[:12]})"
            )
        self.runner.load_running_state(loaded.running)
        self.early = EarlyStopper(self.cfg, meta.early_stop)
        self.pos = _Position(
            step=meta.step,
            epoch=meta.epoch,
            batch_in_epoch=meta.batch_in_epoch,
            wall_time_s=meta.wall_time_s,
        )
        self.history.truncate(meta.history_len)
        if meta.batch_in_epoch < self.steps_per_epoch and meta.next_batch_fingerprint:
            index = self._epoch_batches(meta.epoch)[meta.batch_in_epoch]
            if batch_fingerprint(index) != meta.next_batch_fingerprint:
                raise TrainingError(
                    f"{loaded.path}: the next batch differs from the one recorded at save time "
                    "(corpus or batching changed); cannot resume exactly"
                )

    def _only_epochs_changed(self, loaded: ckpt.LoadedCheckpoint) -> bool:
        saved = ExperimentConfig.model_validate_json(loaded.config_json)
        extended = saved.model_copy(
            update={"train": saved.train.model_copy(update={"epochs": self.cfg.epochs})}
        )
        return config_hash(extended) == config_hash(self.exp)

    # ---- train -------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        train = self.data.splits["train"]
        return epoch_batches(
            train.num_strings,
            self.cfg.batch_size,
            self.exp.seed,
            epoch,
            lengths_np=train.lengths_np,
            bucket_by_length=self.cfg.bucket_by_length,
        )

    def train(self) -> None:
        """Epochs until max epochs, early stopping, max_steps or an interruption."""
        self._wall_base = self.pos.wall_time_s
        self._session_start = self._beat = time.monotonic()
        with _GracefulStop() as stopper:
            while self.pos.stop_reason is None and self.pos.epoch < self.cfg.epochs:
                epoch = self.pos.epoch
                if not self.train_epoch_steps(epoch, stopper):
                    break
                self._end_epoch(epoch)
                if stopper.requested or self.pos.step == self.stop_at_step:
                    self.pos.stop_reason = self.pos.stop_reason or "interrupted"
            if self.pos.stop_reason is None:
                self.pos.stop_reason = "max_epochs"
        self.pos.wall_time_s = self._wall()

    def _wall(self) -> float:
        return self._wall_base + time.monotonic() - self._session_start

    def train_epoch_steps(self, epoch: int, stopper: _GracefulStop) -> bool:
        """The steps of one epoch from the current position; False if stopped before its end.

        Per step: one optimizer step (no host sync), progress, optional hooks; every
        `log_every` steps a history line (the one host sync); `last.pt` every `save_every`
        steps and when stopped mid-epoch.
        """
        cfg = self.cfg
        batches = self._epoch_batches(epoch)
        if self.pos.batch_in_epoch == 0:
            self.hooks.fire("on_epoch_start", self._ctx())
        self.reporter.start_epoch(epoch, cfg.epochs, len(batches), self.pos.batch_in_epoch)
        interval_start, interval_steps = time.monotonic(), 0
        batch_iter = iter_batches(
            self.data.splits["train"],
            cfg.batch_size,
            self.exp.seed,
            epoch,
            start_step=self.pos.batch_in_epoch,
            bucket_by_length=cfg.bucket_by_length,
        )
        step_hooks = self.hooks.has("on_step_end")
        for b, batch in zip(range(self.pos.batch_in_epoch, len(batches)), batch_iter, strict=True):
            self.runner.step(batch, self.pos.step)
            self.pos.step += 1
            self.pos.batch_in_epoch = b + 1
            interval_steps += 1
            self.reporter.advance()
            if step_hooks:
                self.hooks.fire("on_step_end", self._ctx())
            now = time.monotonic()
            if self.pos.step % cfg.log_every == 0:
                self._log_train(interval_steps / max(now - interval_start, 1e-9))
                interval_start, interval_steps = now, 0
            if now - self._beat > HEARTBEAT_S:
                self._heartbeat(now)
            if b + 1 == len(batches):
                break
            if stopper.requested or self.pos.step == self.stop_at_step:
                self.pos.stop_reason = "interrupted"
            elif self.max_steps is not None and self.pos.step >= self.max_steps:
                self.pos.stop_reason = "max_steps"
            if self.pos.stop_reason is not None or (
                cfg.save_every and self.pos.step % cfg.save_every == 0
            ):
                self._check_finite()
                self.pos.wall_time_s = self._wall()
                self._save(LAST, epoch_done=False, next_batch=batches[b + 1])
            if self.pos.stop_reason is not None:
                self._log_train(None)
                self.reporter.end_epoch(f"stopped at step {self.pos.step} ({self.pos.stop_reason})")
                return False
        return True

    def _end_epoch(self, epoch: int) -> None:
        self._log_train(None)
        val = evaluate_splits(self.model, self.data, self.exp, ["val"], self.amp_dtype)["val"]
        flat = flat_metrics("val", val)
        if self.cfg.monitor not in flat:
            raise TrainingError(
                f"train.monitor {self.cfg.monitor!r} is not a validation metric; "
                f"choose one of {', '.join(sorted(flat))}"
            )
        value = flat[self.cfg.monitor]
        improved = self.early.update(value, self.pos.step, epoch)
        self.history.append(
            HistoryRecord(
                kind="eval",
                step=self.pos.step,
                epoch=epoch,
                time=time.time(),
                metrics=flat,
                improved=improved,
            )
        )
        self.hooks.fire("on_validation_end", self._ctx(val_metrics=flat))
        self.pos.epoch = epoch + 1
        self.pos.batch_in_epoch = 0
        reason = self.early.reason_to_stop(value)
        if reason is None and self.pos.epoch >= self.cfg.epochs:
            reason = "max_epochs"
        if reason is None and self.max_steps is not None and self.pos.step >= self.max_steps:
            reason = "max_steps"
        self.pos.wall_time_s = self._wall()
        if reason is not None:
            self.pos.stop_reason = reason
        if improved:
            self._save(BEST, epoch_done=True, next_batch=None, val_metrics=flat)
        next_batch = self._epoch_batches(self.pos.epoch)[0] if reason is None else None
        self._save(LAST, epoch_done=True, next_batch=next_batch, val_metrics=flat)
        self.hooks.fire("on_epoch_end", self._ctx(val_metrics=flat, epoch=epoch))
        mark = "*" if improved else " "
        self.reporter.end_epoch(
            f"epoch {epoch + 1:>3}/{self.cfg.epochs}  step {self.pos.step:>6}  "
            f"{self.cfg.monitor} {value:.4f}{mark} best {self.early.state.best_value:.4f}  "
            f"val nll {flat['val.nll']:.4f}  class {flat['val.class_acc']:.4f}"
        )

    def _log_train(self, steps_per_s: float | None) -> None:
        means = self.runner.drain()
        if means is None:
            return
        if not all(math.isfinite(v) for v in means.values()):
            self._fail_non_finite(means)
        grad_norm = means.pop("grad_norm")
        self.history.append(
            HistoryRecord(
                kind="train",
                step=self.pos.step,
                epoch=self.pos.epoch,
                time=time.time(),
                losses=means,
                lr=self.runner.last_lr,
                grad_norm=grad_norm,
                steps_per_s=steps_per_s,
            )
        )
        self.reporter.show_loss(means["total"], steps_per_s)

    def _check_finite(self) -> None:
        if self.runner.count and not bool(torch.isfinite(self.runner.sums).all()):
            self._fail_non_finite(self.runner.drain() or {})

    def _fail_non_finite(self, means: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in means.items() if not math.isfinite(v))
        self.pos.stop_reason = "non_finite"
        self.pos.message = (
            f"non-finite training statistics before step {self.pos.step} ({bad}); "
            "lower train.lr or set train.grad_clip; the last good checkpoint is kept"
        )
        raise TrainingError(self.pos.message)

    def _save(
        self,
        name: str,
        *,
        epoch_done: bool,
        next_batch: np.ndarray | None,
        val_metrics: dict[str, float] | None = None,
    ) -> None:
        self.history.sync()
        meta = CheckpointMeta(
            kind="best" if name == BEST else "last",
            step=self.pos.step,
            epoch=self.pos.epoch,
            batch_in_epoch=self.pos.batch_in_epoch,
            epoch_done=epoch_done,
            history_len=self.history.count,
            next_batch_fingerprint=batch_fingerprint(next_batch)
            if next_batch is not None
            else None,
            early_stop=self.early.state,
            config_hash=config_hash(self.exp),
            fsmrun_version=fsmrun.__version__,
            wall_time_s=self.pos.wall_time_s,
            val_metrics=val_metrics,
        )
        ckpt.save_ckpt(
            self.run_dir / "checkpoints" / name,
            self.model,
            self.optimizer,
            meta=meta,
            config_json=self.config_json,
            scaler=self.scaler,
            running=self.runner.running_state(),
        )

    def _ctx(
        self, val_metrics: dict[str, float] | None = None, epoch: int | None = None
    ) -> HookContext:
        return HookContext(
            epoch=self.pos.epoch if epoch is None else epoch,
            step=self.pos.step,
            model=self.model,
            run_dir=self.run_dir,
            val_metrics=val_metrics,
        )

    # ---- finish ------------------------------------------------------------------------
    def evaluate_checkpoint(self, name: str) -> CheckpointEval:
        """Checkpoint `name` of this run on every split but train."""
        splits = [split for split in self.data.splits if split != "train"]
        meta, results = evaluate_checkpoint(
            self.run_dir / "checkpoints" / name, self.exp, self.data, self.device, splits
        )
        return CheckpointEval(step=meta.step, epoch=meta.epoch, **results)

    def finish(self) -> Metrics | None:
        """Evaluate best and last checkpoints and write metrics.json (None without them)."""
        folder = self.run_dir / "checkpoints"
        if not (folder / LAST).exists() and not (folder / f"{Path(LAST).stem}.prev.pt").exists():
            return None
        last = self.evaluate_checkpoint(LAST)
        best = self.evaluate_checkpoint(BEST) if (folder / BEST).exists() else last
        metrics = Metrics(
            run_id=self.record.run_id,
            experiment=self.exp.name,
            monitor=self.cfg.monitor,
            stop_reason=self.pos.stop_reason or "max_epochs",
            steps=self.pos.step,
            epochs=self.pos.epoch,
            wall_time_s=round(self.pos.wall_time_s, 3),
            early_stop=self.early.state,
            best=best,
            last=last,
        )
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        return metrics

    def record_stop(self) -> None:
        self.history.append(
            HistoryRecord(
                kind="stop",
                step=self.pos.step,
                epoch=self.pos.epoch,
                time=time.time(),
                stop_reason=self.pos.stop_reason,
                message=self.pos.message,
            )
        )

    # ---- run record --------------------------------------------------------------------
    def _heartbeat(self, now: float) -> None:
        self._beat = now
        self.record = self.record.model_copy(
            update={"heartbeat": time.time(), "steps": self.pos.step, "epochs": self.pos.epoch}
        )
        self._write_record()

    def _write_record(self) -> None:
        # An audit may have marked the run verified while it trains: keep that mark.
        if self.record.audit_verified is None and (self.run_dir / "run.json").exists():
            on_disk = read_run_record(self.run_dir).audit_verified
            if on_disk is not None:
                self.record = self.record.model_copy(update={"audit_verified": on_disk})
        write_run_record(self.run_dir, self.record)

    def set_status(self, status: str, error: str | None = None) -> None:
        now = time.time()
        self.record = self.record.model_copy(
            update={
                "status": status,
                "updated": now,
                "heartbeat": now,
                "steps": self.pos.step,
                "epochs": self.pos.epoch,
                "error": error,
                "pid": None if status != "running" else self.record.pid,
            }
        )
        self._write_record()
        self._index_upsert()

    def _index_upsert(self) -> None:
        """The index is a cache of the run folders: failing to update it is only a warning."""
        if not self.use_index:
            return
        try:
            self.index.upsert_folder(self.run_dir)
        except RegistryError as err:
            self.reporter.info(f"[yellow]warning:[/] registry index not updated ({err})")

    def run(self, *, resuming: bool) -> RunResult:
        """Train (after restoring, when resuming), then finish; statuses kept honest."""
        try:
            if resuming:
                self.restore()
            amp = f"  amp {str(self.amp_dtype).removeprefix('torch.')}" if self.amp_dtype else ""
            self.reporter.info(
                f"[bold]{self.record.run_id}[/]  {self.model.summary()}  device {self.device}{amp}"
            )
            self.train()
        except TrainingError as err:
            self.reporter.end_epoch(f"[red]{err}[/]")
            self.pos.stop_reason = self.pos.stop_reason or "non_finite"
            self.pos.message = str(err)
            self.record_stop()
            metrics = self._finish_quietly()
            self.set_status("failed", error=str(err))
            return RunResult(
                self.record.run_id,
                self.run_dir,
                "failed",
                self.pos.stop_reason,
                metrics,
                self.pos.step,
            )
        except BaseException as err:
            self.reporter.end_epoch("")
            self.set_status(
                "interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                error=f"{type(err).__name__}: {err}",
            )
            raise
        finally:
            self.history.sync()
        self.record_stop()
        if self.pos.stop_reason == "interrupted":
            self.set_status("interrupted")
            return RunResult(
                self.record.run_id, self.run_dir, "interrupted", "interrupted", None, self.pos.step
            )
        metrics = self.finish()
        self.set_status("completed")
        self.history.close()
        return RunResult(
            self.record.run_id,
            self.run_dir,
            "completed",
            self.pos.stop_reason,
            metrics,
            self.pos.step,
        )

    def _finish_quietly(self) -> Metrics | None:
        try:
            return self.finish()
        except ckpt.CheckpointError:
            return None


def _new_record(
    exp: ExperimentConfig,
    run_dir: Path,
    version: int,
    device: torch.device,
    command: list[str] | None,
) -> RunRecord:
    now = time.time()
    chash = config_hash(exp)
    return RunRecord(
        run_id=run_id_for(exp.name, chash, version),
        experiment=exp.name,
        config_hash=chash,
        version=version,
        status="running",
        command=command if command is not None else list(sys.argv),
        device=str(device),
        amp=exp.train.amp,
        deterministic=exp.train.deterministic,
        created=now,
        updated=now,
        heartbeat=now,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )


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

    Phases: seed and determinism flags; DFA, corpus (cached), tensors on `device`; model
    from the init stream; AdamW; epochs of steps with validation, early stopping, best/last
    checkpoints; best and last evaluated on val/test/test_ood; metrics.json, run.json and
    the registry index written. `max_steps` ends training early (audits); `stop_at_step`
    behaves like an interruption after that step (tests of exact resume). `index=False`
    leaves the SQLite index alone (sweep workers: the coordinator indexes the folder).
    """
    controls = SessionControls(hooks, console, progress, max_steps, stop_at_step, index)
    torch_device = resolve_device(device)
    root = default_results_root(results_root)
    # Data errors (bad regex, unfillable corpus) surface before a run folder is claimed.
    data = build_data(exp, torch_device, root)
    run_dir, version = allocate_run_dir(root, exp.name, config_hash(exp), overwrite=overwrite)
    record = _new_record(exp, run_dir, version, torch_device, command)
    return _launch(exp, run_dir, record, torch_device, root, controls, data=data, fresh=True)


def resume_run(
    run_dir: str | Path,
    *,
    epochs: int | None = None,
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
    """Continue the run in `run_dir` from its last checkpoint, exactly where it stopped.

    `epochs` raises the epoch limit to extend a finished run (the learning-rate schedule
    is then recomputed for the new length).
    """
    controls = SessionControls(hooks, console, progress, max_steps, stop_at_step, index)
    run_dir = Path(run_dir)
    exp = ExperimentConfig.model_validate_json((run_dir / "config.json").read_text())
    if epochs is not None and epochs != exp.train.epochs:
        exp = exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": epochs})})
        atomic_write_text(run_dir / "config.json", exp.model_dump_json(indent=2) + "\n")
    torch_device = resolve_device(device)
    root = Path(results_root) if results_root is not None else run_dir.parents[2]
    old = read_run_record(run_dir)
    now = time.time()
    record = old.model_copy(
        update={
            "status": "running",
            "command": command if command is not None else list(sys.argv),
            "device": str(torch_device),
            "updated": now,
            "heartbeat": now,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "times_resumed": old.times_resumed + 1,
            "error": None,
        }
    )
    return _launch(exp, run_dir, record, torch_device, root, controls, data=None, fresh=False)


def _launch(
    exp: ExperimentConfig,
    run_dir: Path,
    record: RunRecord,
    device: torch.device,
    root: Path,
    controls: SessionControls,
    *,
    data: RunData | None,
    fresh: bool,
) -> RunResult:
    """Write the running record, set the session up (a failure marks the run failed), run."""
    write_run_record(run_dir, record)
    session = _Session(
        exp, run_dir, record, device=device, results_root=root, controls=controls, data=data
    )
    try:
        session.setup()
        if fresh:
            session.write_static_files()
    except BaseException as err:
        session.set_status("failed", error=f"{type(err).__name__}: {err}")
        raise
    session._index_upsert()
    return session.run(resuming=not fresh)
