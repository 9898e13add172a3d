"""Evaluate a model on one split: inference in fixed batch order, metrics summed on the device,
one host sync at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fsmrun.core.dataset import SplitData, eval_batches
from fsmrun.core.metrics import MetricAccumulator
from fsmrun.schemas.config import TrainConfig
from fsmrun.schemas.records import SplitMetrics


def evaluate(
    model: nn.Module,
    split: SplitData,
    legal_next_sxv: Tensor,
    cfg: TrainConfig,
    *,
    batch_size: int,
    length_bins: Sequence[int] | None,
    amp_dtype: torch.dtype | None = None,
) -> SplitMetrics:
    """Metrics of `model` on `split` (see `MetricAccumulator` for their definitions).

    Runs in eval mode under inference_mode, optionally under autocast(`amp_dtype`), over
    `eval_batches` (a fixed order, so two calls give identical results), and puts the model
    back in the training mode it had. `length_bins` are bin edges (None or []: no bins).
    """
    device = split.input_ids_nxt.device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            metrics = MetricAccumulator(legal_next_sxv, cfg, length_bins, device)
            for batch in eval_batches(split, batch_size):
                autocast = (
                    torch.autocast(device_type=device.type, dtype=amp_dtype)
                    if amp_dtype is not None
                    else contextlib.nullcontext()
                )
                with autocast:
                    out = model(batch.input_ids_bxt)
                metrics.update(out, batch)
            return metrics.compute()
    finally:
        model.train(was_training)
