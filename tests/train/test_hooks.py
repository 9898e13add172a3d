"""Hooks: an event -> callbacks map fired in registration order; the capture hook's file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsmrun.nn.model import build_model
from fsmrun.schemas.config import ModelConfig
from fsmrun.train.hooks import EVENTS, CaptureHook, HookContext, Hooks


def ctx(epoch: int = 0, model: torch.nn.Module | None = None) -> HookContext:
    return HookContext(epoch=epoch, step=3, model=model or torch.nn.Linear(1, 1))


def test_callbacks_fire_in_registration_order_for_their_event_only():
    seen: list[str] = []
    hooks = Hooks()
    hooks.add("on_epoch_end", lambda c: seen.append("first"))
    hooks.add("on_epoch_end", lambda c: seen.append(f"second {c.step}"))
    hooks.add("on_step_end", lambda c: seen.append("step"))
    hooks.fire("on_epoch_end", ctx())
    assert seen == ["first", "second 3"]
    assert hooks.has("on_epoch_end") and hooks.has("on_step_end")
    assert not hooks.has("on_epoch_start")


def test_unknown_hook_event_is_refused():
    with pytest.raises(ValueError, match="on_epoch_start"):
        Hooks().add("on_batch_end", lambda c: None)
    assert EVENTS == ("on_epoch_start", "on_step_end", "on_validation_end", "on_epoch_end")


class _Out:
    def __init__(self, x_bxt: torch.Tensor) -> None:
        emb_bxtxd = x_bxt.float().unsqueeze(-1).repeat(1, 1, 2)
        self.hidden_states = [emb_bxtxd, emb_bxtxd + 1]
        self.attentions: list[torch.Tensor] = []


class _Recurrent(torch.nn.Module):
    """Stands in for a model without attention: hidden states only."""

    def forward(self, x_bxt: torch.Tensor, capture: bool = False) -> _Out:
        return _Out(x_bxt)


def test_capture_writes_the_chosen_epochs_only(tmp_path):
    ids_bxt = torch.tensor([[1, 3, 4], [1, 4, 0]])
    hook = CaptureHook(ids_bxt, np.array([2, 1]), ["ab", "b"], [2],
                       lambda epoch: tmp_path / f"e{epoch}.pt")  # fmt: skip
    model = _Recurrent().train()
    hook(ctx(epoch=0, model=model))  # the first epoch, not chosen
    assert not list(tmp_path.iterdir())
    hook(ctx(epoch=1, model=model))  # the second epoch, "epoch 2/N" on the console
    saved = torch.load(tmp_path / "e2.pt", weights_only=True)
    assert saved["strings"] == ["ab", "b"] and saved["epoch"] == 2 and saved["step"] == 3
    assert saved["lengths"].tolist() == [2, 1]
    assert saved["hidden_states"].shape == (2, 2, 3, 2)  # [L + 1, B, T, D]
    assert saved["hidden_states"][1, 0, 1].tolist() == [4.0, 4.0]  # token 3, plus one
    assert "attentions" not in saved
    assert model.training  # put back in the mode it had


def test_capture_epochs_count_from_one_like_the_console(tmp_path):
    model = build_model(
        ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=8),
        vocab_size=5,
        num_states=3,
        generator=torch.Generator().manual_seed(0),
    )
    ids_bxt = torch.tensor([[1, 3, 4, 2], [1, 4, 0, 0]])
    hook = CaptureHook(
        ids_bxt,
        np.array([2, 1]),
        ["ab", "b"],
        epochs=[1, 3],
        path_for_epoch=lambda e: tmp_path / "captures" / f"epoch_{e:04d}.pt",
    )
    # The loop fires on_epoch_end with the 0-based index of the epoch just finished; the
    # console prints it as "epoch {index + 1}/3".
    for index, step in enumerate([4, 8, 12]):
        hook(HookContext(epoch=index, step=step, model=model, run_dir=tmp_path))
    files = sorted(p.name for p in (tmp_path / "captures").iterdir())
    assert files == ["epoch_0001.pt", "epoch_0003.pt"]
    last = torch.load(tmp_path / "captures" / "epoch_0003.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (3, 12)
    assert last["hidden_states"].shape == (2, 2, 4, 8)  # [L + 1, B, T, D]
