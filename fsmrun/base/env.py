"""Environment provenance (env.json) and device selection."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fsmrun._version import __version__
from fsmrun.base.errors import UserError
from fsmrun.schemas.records import EnvInfo


class DeviceError(UserError):
    """A device the user asked for is not available here."""


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device cuda was asked for but CUDA is not available here "
                "(no GPU or a CPU build of torch); use --device cpu or --device auto"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda")


def amp_dtype_for(device: torch.device, amp: bool) -> torch.dtype | None:
    """bfloat16 where the device supports it, else float16 (CUDA, with a GradScaler)."""
    if not amp:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def git_commit() -> str | None:
    """The commit of the fsmrun checkout, when fsmrun runs from one."""
    source = Path(__file__).resolve().parents[2]  # the checkout holding fsmrun/
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def collect_env(
    device: torch.device, seed: int, deterministic: bool, amp_dtype: torch.dtype | None
) -> EnvInfo:
    return EnvInfo(
        python=sys.version.split()[0],
        platform=platform.platform(),
        torch=torch.__version__,
        numpy=np.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        device=str(device),
        device_name=device_name(device),
        fsmrun_version=__version__,
        git_commit=git_commit(),
        seed=seed,
        deterministic=deterministic,
        amp=amp_dtype is not None,
        amp_dtype=str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        threads=torch.get_num_threads(),
        hostname=socket.gethostname(),
    )
