"""Stopping: `decide_stop`, the one pure function that says whether and why training stops, and
the early-stopping state it reads (best value of the monitored validation metric, patience)."""

from __future__ import annotations

from fsmrun.schemas.config import TrainConfig
from fsmrun.schemas.records import EarlyStopState, SplitMetrics, StopReason


def update_early_stop(
    state: EarlyStopState, cfg: TrainConfig, value: float, step: int, epoch: int
) -> tuple[EarlyStopState, bool]:
    """Record an evaluation of the monitored metric: (new state, whether it improved)."""
    best = state.best_value
    if cfg.monitor_mode == "max":
        improved = best is None or value > best + cfg.min_delta
    else:
        improved = best is None or value < best - cfg.min_delta
    if improved:
        update = {"best_value": value, "best_step": step, "best_epoch": epoch, "bad_epochs": 0}
        return state.model_copy(update=update), True
    return state.model_copy(update={"bad_epochs": state.bad_epochs + 1}), False


def extension_warning(cfg: TrainConfig, inherited: EarlyStopState, epochs_done: int) -> str | None:
    """Why an extension may stop before `cfg.epochs`: it inherits its parent's evaluations
    without improvement (patience counts from the best value, as in a run trained that long
    from the start), so fewer than the new epochs may be left to it. None when no warning."""
    if cfg.patience is None or inherited.bad_epochs == 0:
        return None
    left = max(1, cfg.patience - inherited.bad_epochs)  # at least one evaluation runs
    if left >= cfg.epochs - epochs_done:
        return None
    return (
        f"the extension inherits {inherited.bad_epochs} evaluation(s) without improvement of "
        f"{cfg.monitor} from its parent: with patience {cfg.patience} it stops after {left} "
        f"more epoch(s) unless {cfg.monitor} improves, before epoch {cfg.epochs}; pass "
        f"--no-early-stop "
        f"(or a larger --patience) to train all {cfg.epochs} epochs"
    )


def decide_stop(
    cfg: TrainConfig,
    *,
    step: int,
    epochs_done: int,
    interrupted: bool = False,
    max_steps: int | None = None,
    early_stop: EarlyStopState | None = None,
    value: float | None = None,
) -> StopReason | None:
    """Whether training stops now, and why; None to go on.

    `value` is the monitored metric when an epoch has just been validated (None between
    steps). First reason wins: threshold, patience (both only after a validation),
    max_epochs, max_steps, interrupted (a signal, or a requested stop step).
    """
    if value is not None and early_stop is not None:
        threshold = cfg.stop_threshold
        if threshold is not None and (
            value >= threshold if cfg.monitor_mode == "max" else value <= threshold
        ):
            return "threshold"
        if cfg.patience is not None and early_stop.bad_epochs >= cfg.patience:
            return "patience"
    if epochs_done >= cfg.epochs:
        return "max_epochs"
    if max_steps is not None and step >= max_steps:
        return "max_steps"
    if interrupted:
        return "interrupted"
    return None


class EarlyStopper:
    """Early-stopping state with methods, for callers that keep one object around."""

    def __init__(self, cfg: TrainConfig, state: EarlyStopState | None = None) -> None:
        self.cfg = cfg
        self.state = state or EarlyStopState(monitor=cfg.monitor, mode=cfg.monitor_mode)

    def update(self, value: float, step: int, epoch: int) -> bool:
        """Record an evaluation; returns whether it improved on the best so far."""
        self.state, improved = update_early_stop(self.state, self.cfg, value, step, epoch)
        return improved

    def reason_to_stop(self, value: float) -> StopReason | None:
        """threshold or patience after an evaluation with `value`, else None."""
        reason = decide_stop(self.cfg, step=0, epochs_done=0, early_stop=self.state, value=value)
        return reason if reason in ("threshold", "patience") else None


def flat_metrics(split: str, metrics: SplitMetrics) -> dict[str, float]:
    """{'val.string_acc': ..., ...} for the scalar fields of a SplitMetrics."""
    return {
        f"{split}.{k}": float(v)
        for k, v in metrics.model_dump(exclude={"bins"}).items()
        if isinstance(v, (int, float))
    }
