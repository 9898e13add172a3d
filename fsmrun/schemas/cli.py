"""JSON documents the command line prints or writes: `eval --json` and the determinism audit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fsmrun.schemas.records import SplitMetrics


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class EvalReport(_Doc):
    """`fsmrun eval RUN --json`: one checkpoint of one run evaluated on some splits."""

    run_id: str
    checkpoint: Literal["best", "last"]
    step: int = Field(description="Optimizer steps taken when the checkpoint was saved.")
    epoch: int = Field(description="Epochs completed when the checkpoint was saved.")
    splits: dict[str, SplitMetrics] = Field(description="Metrics per split (val, test, test_ood).")
    fallback: str | None = Field(
        default=None,
        description="Set when the checkpoint was damaged and its .prev copy was evaluated: why.",
    )


CheckStatus = Literal["identical", "within_tolerance", "different"]


class AuditCheck(_Doc):
    """One comparison of one quantity between a reference run and another run."""

    check: str = Field(
        description="What was compared: config_hash, corpus_hash, init_weights, batch_order, "
        "history, final_weights or metrics."
    )
    compared: str = Field(description="Which runs, e.g. 'run 1 vs run 2' or 'run 1 vs resumed'.")
    status: CheckStatus
    max_abs_diff: float | None = Field(
        description="Largest absolute difference of the numbers compared (None: hashes only)."
    )
    detail: str = Field(default="", description="Where the first difference is, if any.")


class AuditRun(_Doc):
    """One training run of the audit (in a scratch folder, deleted afterwards)."""

    label: str = Field(description="'run 1', 'run 2', ... or 'resumed'.")
    steps: int = Field(description="Optimizer steps taken.")
    status: str = Field(description="Final status of the run.")
    stopped_at_step: int | None = Field(
        default=None, description="resumed only: step where the first session stopped."
    )


class AuditReport(_Doc):
    """`fsmrun audit-determinism`: the report written to <results>/audits/ (and --json)."""

    experiment: str
    config_hash: str
    created: float = Field(description="Unix time the audit finished.")
    fsmrun_version: str
    device: str
    deterministic: bool = Field(description="train.deterministic of the audited config.")
    max_steps: int = Field(description="Steps each audit run trained.")
    runs: list[AuditRun]
    tolerance: float | None = Field(
        description="Absolute tolerance allowed (None: bitwise identity required)."
    )
    tolerance_reason: str | None = Field(default=None, description="Why a tolerance applies.")
    checks: list[AuditCheck]
    passed: bool = Field(description="Every check identical (or within the stated tolerance).")
    verified_runs: list[str] = Field(
        default_factory=list, description="Runs of this config marked audit_verified=True."
    )
