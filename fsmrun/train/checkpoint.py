"""Crash-safe checkpoints that hold everything needed to continue a run exactly.

A checkpoint file is `torch.save({"format", "sha256", "payload"})` where `payload` is the
uint8 tensor of an inner `torch.save` of the state and `sha256` its digest: a torn or
corrupted file is detected on load and the previous good file (`<name>.prev.pt`) is used.
Both levels load with `weights_only=True` and no allow-list: RNG states are tensors and ints,
configuration and position travel as JSON strings.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsmrun.base.errors import UserError
from fsmrun.base.faults import fault_point
from fsmrun.base.io import WriteError, atomic_write_bytes, fsync_dir, prev_path
from fsmrun.schemas.records import CheckpointMeta

log = logging.getLogger(__name__)

CKPT_FORMAT = "fsmrun-ckpt-1"

# Keys of the inner state dict.
KEY_META = "meta"
KEY_CONFIG = "config"
KEY_MODEL = "model"
KEY_OPTIMIZER = "optimizer"
KEY_SCALER = "grad_scaler"
KEY_RNG = "rng"
KEY_RUNNING = "running"

LAST = "last.pt"
BEST = "best.pt"


class CheckpointError(UserError):
    """No usable checkpoint: missing, torn or corrupt (the message names the file)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What `load_ckpt` returns besides restoring the objects it was given."""

    path: Path
    meta: CheckpointMeta
    config_json: str
    running: dict[str, torch.Tensor]
    fallback: str | None = None  # why the file asked for was skipped for its .prev copy


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as tensors and ints."""
    version, py_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": version,
        "python_state": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    assert np_name == "MT19937"
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(
        (state["python_version"], tuple(state["python_state"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch_cpu"])
    if state["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def _serialize(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_ckpt(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    *,
    meta: CheckpointMeta,
    config_json: str,
    scaler: torch.amp.GradScaler | None = None,
    running: dict[str, torch.Tensor] | None = None,
    keep_previous: bool = True,
) -> Path:
    """Write a checkpoint atomically; the file it replaces is kept as `<name>.prev.pt`.

    Order of operations: the new file is fully written and fsynced under a temporary name,
    the current file is renamed to `.prev`, the new one renamed into place, the folder
    fsynced. At every instant at least one complete checkpoint exists.
    """
    path = Path(path)
    inner = {
        KEY_META: meta.model_dump_json(),
        KEY_CONFIG: config_json,
        KEY_MODEL: model.state_dict(),
        KEY_OPTIMIZER: optimizer.state_dict() if optimizer is not None else {},
        KEY_SCALER: scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        KEY_RNG: capture_rng_state(),
        KEY_RUNNING: {k: v.detach().cpu() for k, v in (running or {}).items()},
    }
    payload = _serialize(inner)
    outer = {
        "format": CKPT_FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    tmp = path.with_name(f".{path.name}.new")
    try:
        atomic_write_bytes(tmp, _serialize(outer))
        if keep_previous and path.exists():
            os.replace(path, prev_path(path))
            fault_point("prev_renamed")
        os.replace(tmp, path)
    except OSError as err:  # name the checkpoint, not its temporary name
        tmp.unlink(missing_ok=True)
        raise WriteError(err.errno, err.strerror or str(err), str(path)) from err
    fsync_dir(path.parent)
    return path


def _read_inner(path: Path) -> dict[str, Any]:
    try:
        outer = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # torn zip, truncated file, foreign pickle
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__})") from err
    if not isinstance(outer, dict) or outer.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path}: not an fsmrun checkpoint")
    payload = outer["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != outer["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch (corrupt checkpoint)")
    return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")


def read_ckpt(
    path: str | os.PathLike[str], *, fallback: bool = True
) -> tuple[Path, dict[str, Any]]:
    """The verified inner state of `path`, or of `<name>.prev.pt` when `path` is unusable
    (then one warning names the damaged file and the step of the copy used)."""
    used, inner, _ = _read_with_fallback(Path(path), fallback)
    return used, inner


def _read_with_fallback(path: Path, fallback: bool) -> tuple[Path, dict[str, Any], str | None]:
    candidates = [path, prev_path(path)] if fallback else [path]
    errors = []
    for candidate in candidates:
        if not candidate.exists():
            errors.append(f"{candidate}: missing")
            continue
        try:
            inner = _read_inner(candidate)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        note = None
        if candidate != path and path.exists():
            step = CheckpointMeta.model_validate_json(inner[KEY_META]).step
            note = f"{errors[0]}; using {candidate.name} (step {step}) instead"
            log.warning(note)
        return candidate, inner, note
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))


def load_ckpt(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = False,
    fallback: bool = True,
) -> LoadedCheckpoint:
    """Restore model (and optimizer, scaler, RNG states when given) from a checkpoint.

    Returns the checkpoint's meta, config JSON and running accumulators. With `fallback`,
    a corrupt file is skipped for its `.prev` copy (with a warning naming it).
    """
    verified = verify_ckpt(path, fallback=fallback)
    return apply_ckpt(verified, model, optimizer, scaler=scaler, restore_rng=restore_rng)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint read and checked (checksum, meta) but not yet applied to anything."""

    path: Path
    inner: dict[str, Any]
    meta: CheckpointMeta
    fallback: str | None


def verify_ckpt(path: str | os.PathLike[str], *, fallback: bool = True) -> VerifiedCheckpoint:
    """Read and check a checkpoint (or its .prev copy); CheckpointError if none is usable."""
    used, inner, note = _read_with_fallback(Path(path), fallback)
    return VerifiedCheckpoint(
        used, inner, CheckpointMeta.model_validate_json(inner[KEY_META]), note
    )


def apply_ckpt(
    verified: VerifiedCheckpoint,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = False,
) -> LoadedCheckpoint:
    """Load a verified checkpoint into the objects given."""
    inner = verified.inner
    model.load_state_dict(inner[KEY_MODEL])
    if optimizer is not None and inner[KEY_OPTIMIZER]:
        optimizer.load_state_dict(inner[KEY_OPTIMIZER])
    if scaler is not None and inner[KEY_SCALER]:
        scaler.load_state_dict(inner[KEY_SCALER])
    if restore_rng:
        restore_rng_state(inner[KEY_RNG])
    return LoadedCheckpoint(
        path=verified.path,
        meta=verified.meta,
        config_json=inner[KEY_CONFIG],
        running=inner[KEY_RUNNING],
        fallback=verified.fallback,
    )
