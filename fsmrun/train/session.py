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
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.console import Console

from fsmrun.base.console import ProgressDisplay
from fsmrun.base.env import amp_dtype_for, collect_env, resolve_device
from fsmrun.base.errors import UserError
from fsmrun.base.hashing import config_hash
from fsmrun.base.seeding import hash_state_dict, set_seed, torch_generator
from fsmrun.data.batching import batch_order_hash, epoch_batches, steps_per_epoch
from fsmrun.data.encoding import RunData
from fsmrun.data.prepare import build_data
from fsmrun.data.stream import positive_sampler, stream_epoch, training_steps_per_epoch
from fsmrun.lang.build import build_dfa
from fsmrun.nn.model import build_model
from fsmrun.runs.index import RunIndex
from fsmrun.runs.layout import ResultsFolderError, check_writable, corpus_cache_dir, run_id_for
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import RunHashes, RunRecord
from fsmrun.train.history import HistoryWriter
from fsmrun.train.hooks import CaptureHook, Hooks
from fsmrun.train.optim import optimizer_from_config, warmup_warning
from fsmrun.train.step import StepRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionControls:
    """How a session runs, apart from the experiment: where, with which hooks and display, and
    the early exits. `train_one_experiment` and `resume_run` take it whole (or its fields as
    keywords, which build it once) and hand it on unchanged."""

    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps": resolved in pre-flight
    hooks: Hooks | None = None
    console: Console | None = None  # status lines; None: nothing printed but the progress bar
    progress: bool = True
    max_steps: int | None = None  # end training early (audits)
    stop_at_step: int | None = None  # behave as if interrupted after this step (resume tests)
    index: bool = True  # False: leave the SQLite index to the caller (sweep workers)
    command: list[str] | None = None  # recorded in run.json (None: this process's argv)


@dataclass(frozen=True)
class Plan:
    """What pre-flight settled, handed whole to the record, the folder claim and the session:
    the experiment, its config hash (computed once), the device, the run's data and controls."""

    exp: ExperimentConfig
    config_hash: str
    device: torch.device
    data: RunData
    controls: SessionControls


# ---------------------------------------------------------------------------- before a run


def preflight(
    exp: ExperimentConfig, controls: SessionControls, root: os.PathLike[str] | str
) -> Plan:
    """Everything a user can get wrong, checked before a run folder is claimed: the device,
    the language (regex, state cap), a writable results folder and the corpus capacity.

    Returns the plan of the run; its data (the corpus cached in the results folder) is built
    on the DFA checked here.
    """
    device = resolve_device(controls.device)
    dfa = build_dfa(exp.data)  # a bad language is reported before anything is written
    root = check_writable(root)
    total_steps = exp.train.epochs * training_steps_per_epoch(exp)
    if (warning := warmup_warning(exp.train, total_steps)) is not None:
        log.warning("%s", warning)
    data = build_data(exp, device, corpus_cache_dir(root), dfa=dfa)
    return Plan(exp, config_hash(exp), device, data, controls)


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


def new_record(plan: Plan, version: int, parent: tuple[str, int] | None = None) -> RunRecord:
    """The record of a fresh run, status running (`parent`: run id and step it extends)."""
    now = time.time()
    exp, command = plan.exp, plan.controls.command
    return RunRecord(
        run_id=run_id_for(exp.name, plan.config_hash, version),
        experiment=exp.name,
        config_hash=plan.config_hash,
        version=version,
        status="running",
        command=command if command is not None else list(sys.argv),
        device=str(plan.device),
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


def resumed_record(old: RunRecord, plan: Plan, fallback: str | None = None) -> RunRecord:
    """`old`, running again in this process (`fallback`: a damaged checkpoint skipped)."""
    now = time.time()
    command = plan.controls.command
    return old.model_copy(
        update={
            "status": "running",
            "command": command if command is not None else list(sys.argv),
            "device": str(plan.device),
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
    display: ProgressDisplay  # the progress bar and epoch lines
    hooks: Hooks
    amp_dtype: torch.dtype | None
    controls: SessionControls
    steps_per_epoch: int = 0
    config_hash: str = ""
    _order: tuple[int, list[np.ndarray]] | None = field(default=None, init=False, repr=False)

    def epoch_order(self, epoch: int) -> list[np.ndarray]:
        """The batches of `epoch`: row indices into train, a function of (seed, epoch); with
        train.sampling = stream, the epoch's drawn symbol arrays (a function of seed, step).
        The latest epoch's is kept, so the loop, the checkpoints and the resume checks share one."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, self._compute_order(epoch))
        return self._order[1]

    def _compute_order(self, epoch: int) -> list[np.ndarray]:
        cfg, data_cfg = self.exp.train, self.exp.data
        if cfg.sampling == "stream":
            positives = None
            if data_cfg.sampling == "positives":
                positives = positive_sampler(self.data.dfa, data_cfg.min_len, data_cfg.max_len)
            return stream_epoch(
                self.exp.seed,
                epoch,
                cfg.stream_steps,
                cfg.batch_size,
                data_cfg.min_len,
                data_cfg.max_len,
                len(self.data.vocab.symbols),
                positives,
            )
        train = self.data.splits["train"]
        return epoch_batches(
            train.num_strings,
            cfg.batch_size,
            self.exp.seed,
            epoch,
            lengths_np=train.lengths_np,
            bucket_by_length=cfg.bucket_by_length,
        )

    def update_index(self) -> None:
        """Upsert this run's row in the index (a warning on failure); skipped when the
        controls leave the index to the caller."""
        if self.controls.index:
            index_quietly(self.folder)

    def set_status(self, status: str, *, steps: int, epochs: int, error: str | None = None) -> None:
        """run.json's status (with the steps and epochs done), then the index."""
        self.record = self.folder.set_status(
            self.record, status, steps=steps, epochs=epochs, error=error
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
    except ResultsFolderError as err:
        log.warning("run index not updated (%s)", err)


def open_session(plan: Plan, folder: RunFolder, record: RunRecord) -> Session:
    """Seed, model from the init stream, AdamW, runner, over the plan's data and device."""
    exp, data, device, controls = plan.exp, plan.data, plan.device, plan.controls
    cfg = exp.train
    set_seed(exp.seed, cfg.deterministic)
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
    if cfg.sampling == "stream":
        per_epoch = cfg.stream_steps
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
        display=ProgressDisplay(controls.console, enabled=controls.progress),
        hooks=controls.hooks or Hooks(),
        amp_dtype=amp_dtype,
        controls=controls,
        steps_per_epoch=per_epoch,
        config_hash=plan.config_hash,
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
    folder, exp, data = session.folder, session.exp, session.data
    folder.write_config(exp)
    folder.write_fsm(data.dfa.to_json(), data.dfa.to_dot())
    folder.write_env(
        collect_env(session.device, exp.seed, exp.train.deterministic, session.amp_dtype)
    )
    hashes = RunHashes(
        config=session.config_hash,
        init_weights=hash_state_dict(session.model),
        corpus=data.corpus_hash,
        batch_order=batch_order_hash(session.epoch_order(0)),
    )
    update = {
        "hashes": hashes,
        "model_summary": session.model.summary(),
        "parameter_count": session.model.parameter_count(),
    }
    session.record = folder.write_record(session.record.model_copy(update=update))


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
