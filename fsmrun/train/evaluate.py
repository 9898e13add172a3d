"""Evaluate a model on one split: inference in fixed batch order, metrics summed on the device,
one host sync at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from fsmrun.base.env import amp_dtype_for, resolve_device
from fsmrun.base.errors import UserError
from fsmrun.data.batching import eval_batches
from fsmrun.data.encoding import RunData, SplitData
from fsmrun.data.prepare import build_data
from fsmrun.nn.model import build_model
from fsmrun.runs.layout import corpus_cache_dir
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.cli import EvalReport
from fsmrun.schemas.config import ExperimentConfig, TrainConfig
from fsmrun.schemas.records import CheckpointMeta, SplitMetrics
from fsmrun.train import checkpoint as ckpt
from fsmrun.train.metrics import MetricAccumulator, default_length_bins


def evaluate(
    model: nn.Module,
    split: SplitData,
    legal_next_sxv: Tensor,
    cfg: TrainConfig,
    *,
    batch_size: int,
    length_bins: Sequence[int] | None,
    amp_dtype: torch.dtype | None = None,
    num_classes: int = 2,
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
            metrics = MetricAccumulator(
                legal_next_sxv,
                cfg,
                length_bins,
                device,
                num_classes=num_classes,
                max_length=split.max_length,
            )
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


def evaluate_splits(
    model: nn.Module,
    data: RunData,
    exp: ExperimentConfig,
    splits: Sequence[str],
    amp_dtype: torch.dtype | None = None,
) -> dict[str, SplitMetrics]:
    """Evaluate `model` on the named splits of `data` with the experiment's bins and losses."""
    bins = exp.train.length_bins or default_length_bins(exp.data)
    return {
        split: evaluate(
            model,
            data.splits[split],
            data.legal_next_sxv,
            exp.train,
            batch_size=max(exp.train.batch_size, 256),
            length_bins=bins,
            amp_dtype=amp_dtype,
            num_classes=data.num_classes,
        )
        for split in splits
    }


def evaluate_checkpoint(
    path: Path,
    exp: ExperimentConfig,
    data: RunData,
    device: torch.device,
    splits: Sequence[str],
    notes: list[str] | None = None,
) -> tuple[CheckpointMeta, dict[str, SplitMetrics]]:
    """Load a checkpoint (with its .prev fallback, noted in `notes`) into a fresh model and
    evaluate it."""
    model = build_model(
        exp.model,
        data.vocab.size,
        data.dfa.num_states,
        num_classes=data.num_classes,
        legal_next=data.legal_next,
    )
    loaded = ckpt.load_ckpt(path, model)
    if loaded.fallback and notes is not None:
        notes.append(loaded.fallback)
    model.to(device)
    amp_dtype = amp_dtype_for(device, exp.train.amp)
    return loaded.meta, evaluate_splits(model, data, exp, splits, amp_dtype)


def evaluate_run(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    splits: list[str] | None = None,
    device: str = "auto",
    results_root: str | Path | None = None,
) -> EvalReport:
    """Evaluate checkpoint `best` or `last` of a run on the given splits (default: all)."""
    folder = RunFolder(run_dir)
    if checkpoint not in ("best", "last"):
        raise UserError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    record = folder.read_record()
    exp = folder.read_config()
    if exp is None:
        raise UserError(f"{record.run_id} has no config.json: it died during set-up")
    torch_device = resolve_device(device)
    root = Path(results_root) if results_root is not None else folder.results_root
    data = build_data(exp, torch_device, corpus_cache_dir(root))
    wanted = splits or [s for s in data.splits if s != "train"]
    unknown = [s for s in wanted if s not in data.splits]
    if unknown:
        raise UserError(
            f"unknown split {unknown[0]!r}; this run has {', '.join(sorted(data.splits))}"
        )
    path = folder.checkpoint(checkpoint)  # type: ignore[arg-type]
    if checkpoint == "best" and not folder.has_checkpoint("best") and folder.has_checkpoint("last"):
        status = folder.status()
        why = f": {record.error}" if record.status == "failed" and record.error else ""
        raise UserError(
            f"{record.run_id} has no best checkpoint (it is {status} after {record.steps} "
            f"steps, no validation chose one{why}); evaluate its last one with --checkpoint last"
        )
    notes: list[str] = []
    meta, results = evaluate_checkpoint(path, exp, data, torch_device, wanted, notes)
    return EvalReport(
        run_id=record.run_id,
        checkpoint=checkpoint,  # type: ignore[arg-type]
        step=meta.step,
        epoch=meta.epoch,
        splits=results,
        fallback=notes[0] if notes else None,
    )
