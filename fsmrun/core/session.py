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

import numpy as np
import torch
from rich.console import Console

from fsmrun.core.console import ConsoleReporter
from fsmrun.core.dataset import RunData, batch_order_hash, epoch_batches, steps_per_epoch
from fsmrun.core.determinism import config_hash, hash_state_dict, set_seed, torch_generator
from fsmrun.core.env import amp_dtype_for, collect_env, resolve_device
from fsmrun.core.errors import UserError
from fsmrun.core.history import HistoryWriter
from fsmrun.core.hooks import CaptureHook, Hooks
from fsmrun.core.index import RegistryIndex
from fsmrun.core.languages import build_dfa
from fsmrun.core.model import build_model
from fsmrun.core.optim import optimizer_from_config
from fsmrun.core.registry import RegistryError, check_writable, corpus_cache_dir, run_id_for
from fsmrun.core.run_data import build_data
from fsmrun.core.run_folder import RunFolder, effective_status
from fsmrun.core.step import StepRunner
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import RunHashes, RunRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionControls:
    """How a session runs, apart from the experiment: hooks, display, early exits."""

    hooks: Hooks | None = None
    console: Console | None = None
    progress: bool = True
    max_steps: int | None = None
    stop_at_step: int | None = None


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


def check_resume(folder: RunFolder, epochs: int | None) -> tuple[RunRecord, ExperimentConfig]:
    """The resume rules: an interrupted or failed run continues; a completed one only when
    `epochs` raises its epoch limit; a running one, or one without config.json, does not.

    Returns the run's record and its config (with the new epoch limit). UserError otherwise.
    """
    record = folder.read_record()
    status = effective_status(record)
    config = folder.read_config()
    if config is None:
        raise UserError(f"{record.run_id} has no config.json: it died during set-up; train anew")
    if status == "running":
        raise UserError(
            f"{record.run_id} is still running (pid {record.pid} on {record.hostname}); "
            "stop it first"
        )
    limit = config.train.epochs
    if epochs is not None and epochs < limit:
        raise UserError(
            f"--epochs {epochs} is below the run's epoch limit ({limit}); "
            "resume can only extend a run"
        )
    if status == "completed" and (epochs is None or epochs == limit):
        raise UserError(
            f"{record.run_id} is completed ({limit} epochs); pass --epochs N with "
            f"N > {limit} to extend it"
        )
    if epochs is not None and epochs != limit:
        train = config.train.model_copy(update={"epochs": epochs})
        config = config.model_copy(update={"train": train})
    return record, config


def new_record(
    exp: ExperimentConfig, version: int, device: torch.device, command: list[str] | None
) -> RunRecord:
    """The record of a fresh run, status running."""
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


def resumed_record(old: RunRecord, device: torch.device, command: list[str] | None) -> RunRecord:
    """`old`, running again in this process."""
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
        """Upsert this run's row in the index (a warning on failure)."""
        index_quietly(self.folder)


def index_quietly(folder: RunFolder) -> None:
    """The index is a cache of the run folders: failing to update it is only a warning."""
    try:
        RegistryIndex(folder.results_root).upsert_folder(folder.path)
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
