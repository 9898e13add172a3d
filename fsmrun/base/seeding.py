"""Seeding, named random streams and content hashes: everything reproducibility rests on.

One experiment seed fans out into independent named streams (data, init, batch order,
dropout), so changing how one is consumed never shifts another.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping

import numpy as np
import torch

STREAMS = ("data", "init", "batch_order", "dropout", "stream")  # stream: streamed training batches

__all__ = [
    "STREAMS",
    "derive_seed",
    "hash_state_dict",
    "hash_tensors",
    "numpy_rng",
    "set_seed",
    "torch_generator",
]


def derive_seed(seed: int, stream: str, *extra: int) -> int:
    """A 63-bit seed for the named stream, a pure function of (seed, stream, *extra)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    key = json.dumps([int(seed), stream, *[int(e) for e in extra]]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def numpy_rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """A fresh numpy Generator for the named stream."""
    return np.random.default_rng(derive_seed(seed, stream, *extra))


def torch_generator(seed: int, stream: str, *extra: int, device: str = "cpu") -> torch.Generator:
    """A fresh torch Generator for the named stream."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, stream, *extra))
    return gen


def set_seed(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch (from the dropout stream) and set the determinism switches.

    With `deterministic`, torch uses deterministic algorithms (an op that has none warns
    rather than stopping a long run), cuDNN autotuning is off and cuBLAS gets a fixed
    workspace; without it, cuDNN may
    pick the fastest kernels, which can differ from run to run on CUDA. CPU runs are
    reproducible either way.
    """
    global_seed = derive_seed(seed, "dropout")
    random.seed(global_seed)
    np.random.seed(global_seed % 2**32)
    torch.manual_seed(global_seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def hash_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of tensors, in key order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def hash_state_dict(module: torch.nn.Module) -> str:
    """Fingerprint of a model's parameters and buffers."""
    return hash_tensors(module.state_dict())
