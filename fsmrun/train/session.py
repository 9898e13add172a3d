"""What a training session needs before its first step: pre-flight checks, the resume rules,
the run record, and the live objects (data, model, optimizer, step runner, history, hooks)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console

from fsmrun.base.console import ConsoleReporter
from fsmrun.base.env import amp_dtype_for, collect_env, resolve_device
from fsmrun.base.errors import UserError
from fsmrun.base.seeding import config_hash, hash_state_dict, set_seed, torch_generator
from fsmrun.data.batching import batch_order_hash, epoch_batches, steps_per_epoch
from fsmrun.data.encoding import RunData
from fsmrun.data.prepare import build_data
from fsmrun.lang.build import build_dfa
from fsmrun.nn.model import build_model
from fsmrun.runs.index import RunIndex
from fsmrun.runs.layout import RegistryError, check_writable, corpus_cache_dir, run_id_for
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import RunHashes, RunRecord
from fsmrun.train.history import HistoryWriter
from fsmrun.train.hooks import CaptureHook, Hooks
from fsmrun.train.optim import optimizer_from_config
from fsmrun.train.step import StepRunner

if TYPE_CHECKING:
    from fsmrun.train.state import TrainState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionControls:
    """How a session runs, apart from the experiment: hooks, display, early exits."""

    hooks: Hooks | None = None
    console: Console | None = None
    progress: bool = True
    max_steps: int | None = None
    stop_at_step: int | None = None
    index: bool = True  # False: leave the SQLite index to the caller (sweep workers)


# ---------------------------------------------------------------------------- before a run


def preflight(
    exp: ExperimentConfig, device: str, root: os.PathLike[str] | str
) -> tuple[torch.device, RunData]:
    """Everything a user can get wrong, checked before a run folder is claimed: the device,
    a writable results folder, the language (regex, state cap) and the corpus capacity.

    Returns the device and the run's data (the corpus lands in the results folder's cache).
    """
    torch_device = resolve_device(device)
    build_dfa(exp.data)  # a bad language is reported before anything is written
    root = check_writable(root)
    return torch_device, build_data(exp, torch_device, corpus_cache_dir(root))


@dataclass(frozen=True)
class StopRule:
    """A new stopping rule for an extension: a higher epoch limit, a patience, or none."""

    epochs: int | None = None
    patience: int | None = None
    early_stop: bool = True

    def changes(self) -> bool:
        return self.epochs is not None or self.patience is not None or not self.early_stop

    def apply(self, config: ExperimentConfig) -> ExperimentConfig:
        update: dict[str, object] = {}
        if self.epochs is not None:
            update["epochs"] = self.epochs
        if self.patience is not None:
            update["patience"] = self.patience
        if not self.early_stop:
            update.update(patience=None, stop_threshold=None)
        train = config.train.model_validate({**config.train.model_dump(), **update})
        return config.model_copy(update={"train": train})


def pin_threads(folder: RunFolder) -> int | None:
    """Set torch's intra-op thread count to the one the run trained with (env.json), so a
    resumed CPU run continues with the same float reductions; the count, or None when the run
    has no env.json (killed during set-up: it starts over with the process's count)."""
    env = folder.read_env()
    if env is None or env.threads < 1:
        return None
    if torch.get_num_threads() != env.threads:
        torch.set_num_threads(env.threads)
    return env.threads


def check_resume(
    folder: RunFolder, epochs: int | None = None, rule: StopRule | None = None
) -> tuple[RunRecord, ExperimentConfig, bool]:
    """The resume rules: an interrupted or failed run continues in place, as it was; a
    completed one is extended into a new child run, and only with a new stopping rule
    (`epochs` above its limit, a patience, or no early stopping); a run whose writer holds its
    lock, or one without config.json, does not. Nothing is written.

    Returns the run's record, the config to train and whether it is an extension.
    """
    rule = rule or StopRule()
    if epochs is not None:
        rule = StopRule(epochs, rule.patience, rule.early_stop)
    record = folder.read_record()
    status = folder.status()
    config = folder.read_config()
    if status == "running":
        raise UserError(folder.in_use_message())
    if config is None:
        raise UserError(f"{record.run_id} has no config.json: it died during set-up; train anew")
    limit = config.train.epochs
    if rule.epochs is not None and rule.epochs < limit:
        raise UserError(
            f"--epochs {rule.epochs} is below the run's epoch limit ({limit}); "
            "resume can only extend a run"
        )
    extended = rule.apply(config) if rule.changes() else config
    if status != "completed":
        if extended != config:
            raise UserError(
                f"{record.run_id} is {status}: it resumes with its own stopping rule; resume "
                "it without --epochs/--patience/--no-early-stop, then extend the completed run"
            )
        return record, config, False
    if extended == config:
        raise UserError(
            f"{record.run_id} is completed ({limit} epochs); pass --epochs N with "
            f"N > {limit}, --patience N or --no-early-stop to extend it into a new run"
        )
    return record, extended, True


def new_record(
    exp: ExperimentConfig,
    version: int,
    device: torch.device,
    command: list[str] | None,
    parent: tuple[str, int] | None = None,
) -> RunRecord:
    """The record of a fresh run, status running (`parent`: run id and step it extends)."""
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
        parent_run=parent[0] if parent else None,
        parent_step=parent[1] if parent else None,
    )


def resumed_record(
    old: RunRecord, device: torch.device, command: list[str] | None, fallback: str | None = None
) -> RunRecord:
    """`old`, running again in this process (`fallback`: a damaged checkpoint skipped)."""
    now = time.time()
    return old.model_copy(
        update={
            "status": "running",
            "command": command if command is not None else list(sys.argv),
            "device": str(device),
            "updated": now,
            "heartbeat": now,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "times_resumed": old.times_resumed + 1,
            "error": None,
            "checkpoint_fallbacks": old.checkpoint_fallbacks + ([fallback] if fallback else []),
        }
    )


# ---------------------------------------------------------------------------- the session


@dataclass
class Session:
    """The live objects of one training session over one run folder."""

    exp: ExperimentConfig
    folder: RunFolder
    record: RunRecord
    device: torch.device
    data: RunData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    runner: StepRunner
    history: HistoryWriter
    reporter: ConsoleReporter
    hooks: Hooks
    amp_dtype: torch.dtype | None
    controls: SessionControls
    steps_per_epoch: int = 0
    config_hash: str = ""

    def epoch_order(self, epoch: int) -> list[np.ndarray]:
        """The batches (row indices into train) of `epoch`, a function of (seed, epoch)."""
        train = self.data.splits["train"]
        return epoch_batches(
            train.num_strings,
            self.exp.train.batch_size,
            self.exp.seed,
            epoch,
            lengths_np=train.lengths_np,
            bucket_by_length=self.exp.train.bucket_by_length,
        )

    def update_index(self) -> None:
        """Upsert this run's row in the index (a warning on failure); skipped when the
        controls leave the index to the caller."""
        if self.controls.index:
            index_quietly(self.folder)

    def set_status(self, state: TrainState, status: str, error: str | None = None) -> None:
        """run.json's status (with the steps and epochs of `state`), then the index."""
        self.record = self.folder.set_status(
            self.record, status, steps=state.step, epochs=state.epoch, error=error
        )
        self.update_index()


def record_failure(
    folder: RunFolder, record: RunRecord, status: str, error: str, *, index: bool = True
) -> None:
    """Best effort: when even this write fails (disk full), run.json says running and the
    released lock makes it read as interrupted; the original error is what gets raised."""
    try:
        folder.set_status(record, status, steps=record.steps, epochs=record.epochs, error=error)
    except OSError as err:
        log.warning("could not record the run as %s in run.json (%s)", status, err)
        return
    if index:
        index_quietly(folder)


def index_quietly(folder: RunFolder) -> None:
    """The index is a cache of the run folders: failing to update it is only a warning."""
    try:
        RunIndex(folder.results_root).upsert_folder(folder.path)
    except RegistryError as err:
        log.warning("registry index not updated (%s)", err)


def open_session(
    exp: ExperimentConfig,
    folder: RunFolder,
    record: RunRecord,
    device: torch.device,
    controls: SessionControls,
    data: RunData | None,
) -> Session:
    """Seed, data (built here when not handed in), model from the init stream, AdamW, runner."""
    cfg = exp.train
    set_seed(exp.seed, cfg.deterministic)
    if data is None:
        data = build_data(exp, device, corpus_cache_dir(folder.results_root))
    model = build_model(
        exp.model,
        data.vocab.size,
        data.dfa.num_states,
        generator=torch_generator(exp.seed, "init"),
        num_classes=data.num_classes,
        legal_next=data.legal_next,
    ).to(device)
    optimizer = optimizer_from_config(model, cfg)
    amp_dtype = amp_dtype_for(device, cfg.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    per_epoch = steps_per_epoch(data.splits["train"].num_strings, cfg.batch_size)
    runner = StepRunner(
        model, optimizer, cfg, cfg.epochs * per_epoch, amp_dtype=amp_dtype, scaler=scaler
    )
    session = Session(
        exp=exp,
        folder=folder,
        record=record,
        device=device,
        data=data,
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        runner=runner,
        history=HistoryWriter(folder.history),
        reporter=ConsoleReporter(controls.console, enabled=controls.progress),
        hooks=controls.hooks or Hooks(),
        amp_dtype=amp_dtype,
        controls=controls,
        steps_per_epoch=per_epoch,
        config_hash=config_hash(exp),
    )
    if cfg.capture_epochs:
        val = data.splits["val"]
        index = np.arange(min(cfg.capture_batch_size, val.num_strings))
        batch = val.batch(index)
        strings = [data.vocab.decode(row.tolist()) for row in batch.input_ids_bxt.cpu()]
        capture = CaptureHook(
            batch.input_ids_bxt, val.lengths_np[index], strings, cfg.capture_epochs, folder.capture
        )
        session.hooks.add("on_epoch_end", capture)
    return session


def write_static_files(session: Session) -> None:
    """config.json, fsm.json, fsm.dot, env.json and the hashes in run.json of a fresh run."""
    s, folder = session, session.folder
    folder.write_config(s.exp)
    folder.write_fsm(s.data.dfa.to_json(), s.data.dfa.to_dot())
    folder.write_env(collect_env(s.device, s.exp.seed, s.exp.train.deterministic, s.amp_dtype))
    hashes = RunHashes(
        config=s.config_hash,
        init_weights=hash_state_dict(s.model),
        corpus=s.data.corpus_hash,
        batch_order=batch_order_hash(s.epoch_order(0)),
    )
    update = {
        "hashes": hashes,
        "model_summary": s.model.summary(),
        "parameter_count": s.model.parameter_count(),
    }
    s.record = folder.write_record(s.record.model_copy(update=update))


class StopSignals:
    """SIGINT/SIGTERM set a flag checked between steps; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
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
