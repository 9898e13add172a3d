"""Training hooks: an event -> callbacks map, and a built-in capture of model internals.

Events fire in this order each epoch: on_epoch_start, on_step_end (every step),
on_validation_end, on_epoch_end. Callbacks receive a `HookContext`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsmrun.base.io import atomic_write_bytes

EVENTS = ("on_epoch_start", "on_step_end", "on_validation_end", "on_epoch_end")


@dataclass
class HookContext:
    """What a callback may read: the position in training and the live objects."""

    epoch: int
    step: int
    model: torch.nn.Module
    run_dir: Path | None = None
    val_metrics: dict[str, float] | None = None


Callback = Callable[[HookContext], None]


class Hooks:
    """Event name -> callbacks, fired in registration order."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {event: [] for event in EVENTS}

    def add(self, event: str, callback: Callback) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown hook event {event!r}; known: {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def has(self, event: str) -> bool:
        return bool(self._callbacks[event])

    def fire(self, event: str, ctx: HookContext) -> None:
        for callback in self._callbacks[event]:
            callback(ctx)


class CaptureHook:
    """Saves attention maps and hidden states of one fixed batch after chosen epochs.

    Epochs count from 1, as the console prints them ("epoch 1/20"): `epochs=[1, 3]` captures
    after the first and the third epoch. The loop fires on_epoch_end with `ctx.epoch` the
    0-based index of the epoch just finished, so epoch number e = ctx.epoch + 1.
    Writes the file `path_for_epoch(e)` names (the run folder's `captures/epoch_<eeee>.pt`,
    loadable with weights_only=True): `epoch` (e), `step`, the input ids, lengths, strings,
    and per layer `attentions` [L, B, H, T, T] (transformer only) and `hidden_states`
    [L + 1, B, T, D].
    """

    def __init__(
        self,
        input_ids_bxt: torch.Tensor,
        lengths_b: np.ndarray,
        strings: list[str],
        epochs: list[int],
        path_for_epoch: Callable[[int], Path],
    ) -> None:
        self.input_ids_bxt = input_ids_bxt
        self.lengths_b = lengths_b
        self.strings = strings
        self.epochs = set(epochs)
        self.path_for_epoch = path_for_epoch

    def __call__(self, ctx: HookContext) -> None:
        epoch = ctx.epoch + 1
        if epoch not in self.epochs:
            return
        model = ctx.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(self.input_ids_bxt, capture=True)
        model.train(was_training)
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": ctx.step,
            "strings": list(self.strings),
            "input_ids": self.input_ids_bxt.cpu(),
            "lengths": torch.from_numpy(np.asarray(self.lengths_b, dtype=np.int64)),
            "hidden_states": torch.stack([h.float().cpu() for h in out.hidden_states]),
        }
        if out.attentions:
            record["attentions"] = torch.stack([a.float().cpu() for a in out.attentions])
        buf = io.BytesIO()
        torch.save(record, buf)
        atomic_write_bytes(self.path_for_epoch(epoch), buf.getvalue())
