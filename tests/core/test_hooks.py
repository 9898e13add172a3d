"""Hooks: the capture of model internals after the epochs the config names (counted from 1)."""

from __future__ import annotations

import numpy as np
import torch

from fsmrun.core.hooks import CaptureHook, HookContext
from fsmrun.core.model import build_model
from fsmrun.schemas.config import ModelConfig


def test_capture_epochs_count_from_one_like_the_console(tmp_path):
    model = build_model(
        ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=8),
        vocab_size=5,
        num_states=3,
        generator=torch.Generator().manual_seed(0),
    )
    ids_bxt = torch.tensor([[1, 3, 4, 2], [1, 4, 0, 0]])
    hook = CaptureHook(ids_bxt, np.array([2, 1]), ["ab", "b"], epochs=[1, 3])
    # The loop fires on_epoch_end with the 0-based index of the epoch just finished; the
    # console prints it as "epoch {index + 1}/3".
    for index, step in enumerate([4, 8, 12]):
        hook(HookContext(epoch=index, step=step, model=model, run_dir=tmp_path))
    files = sorted(p.name for p in (tmp_path / "captures").iterdir())
    assert files == ["epoch_0001.pt", "epoch_0003.pt"]
    last = torch.load(tmp_path / "captures" / "epoch_0003.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (3, 12)
    assert last["hidden_states"].shape == (2, 2, 4, 8)  # [L + 1, B, T, D]
