"""Early stopping and best-checkpoint tracking on a monitored validation metric."""

from __future__ import annotations

from fsmrun.schemas.config import TrainConfig
from fsmrun.schemas.records import EarlyStopState, SplitMetrics, StopReason


class EarlyStopper:
    """Tracks the monitored validation metric: improvement, patience, threshold."""

    def __init__(self, cfg: TrainConfig, state: EarlyStopState | None = None) -> None:
        self.cfg = cfg
        self.state = state or EarlyStopState(monitor=cfg.monitor, mode=cfg.monitor_mode)

    def update(self, value: float, step: int, epoch: int) -> bool:
        """Record an evaluation; returns whether it improved on the best so far."""
        best = self.state.best_value
        if self.cfg.monitor_mode == "max":
            improved = best is None or value > best + self.cfg.min_delta
        else:
            improved = best is None or value < best - self.cfg.min_delta
        if improved:
            self.state = self.state.model_copy(
                update={
                    "best_value": value,
                    "best_step": step,
                    "best_epoch": epoch,
                    "bad_epochs": 0,
                }
            )
        else:
            self.state = self.state.model_copy(update={"bad_epochs": self.state.bad_epochs + 1})
        return improved

    def reason_to_stop(self, value: float) -> StopReason | None:
        threshold = self.cfg.stop_threshold
        if threshold is not None and (
            value >= threshold if self.cfg.monitor_mode == "max" else value <= threshold
        ):
            return "threshold"
        if self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience:
            return "patience"
        return None


def flat_metrics(split: str, metrics: SplitMetrics) -> dict[str, float]:
    """{'val.string_acc': ..., ...} for the scalar fields of a SplitMetrics."""
    return {
        f"{split}.{k}": float(v)
        for k, v in metrics.model_dump(exclude={"bins"}).items()
        if isinstance(v, (int, float))
    }
