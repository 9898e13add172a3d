"""RunRow: one run as the run index lists it (a row of `fsmrun ls`, a line of its --json)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fsmrun.schemas.records import RunStatus, StopReason


class RunRow(BaseModel):
    """Key fields and metrics of one run, flattened from run.json and metrics.json."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    run_id: str = Field(description="'<experiment>-<hash12>-v<N>'.")
    experiment: str
    config_hash: str = Field(description="Full sha256 of the number-changing config.")
    version: int = Field(description="N of the v<N> folder.")
    folder: str = Field(description="Run folder relative to the results root (POSIX form).")
    status: RunStatus = Field(
        description="Status now: a 'running' run whose process is gone shows as 'interrupted'."
    )
    created: float = Field(description="Unix time the run was created.")
    updated: float = Field(description="Unix time of the last status change.")
    hostname: str = Field(description="Host the run ran (or runs) on.")
    pid: int | None = Field(description="Process id of the training process while running.")
    heartbeat: float = Field(description="Unix time the training process last showed life.")
    device: str
    amp: bool
    deterministic: bool
    steps: int = Field(description="Optimizer steps taken.")
    epochs: int = Field(description="Epochs completed.")
    times_resumed: int
    stop_reason: StopReason | None = Field(description="Why training ended (from metrics.json).")
    best_val_metric: str | None = Field(description="Monitored validation metric, e.g. val.loss.")
    best_val_value: float | None = Field(description="Best value of the monitored metric.")
    test_string_acc: float | None = Field(
        description="Whole-string accuracy on test, best checkpoint."
    )
    test_ood_string_acc: float | None = Field(
        description="Whole-string accuracy on test_ood, best checkpoint."
    )
    wall_time_s: float | None = Field(description="Training wall time, all sessions summed.")
    audit_verified: bool | None = Field(
        description="True once audit-determinism verified this config."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="The run's tags (from labels.json beside it)."
    )
