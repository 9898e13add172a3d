"""Records fsmrun writes to disk: run.json, env.json, metrics.json, history lines, checkpoints.

Each is a Pydantic model; `json_schemas/*.schema.json` are generated from these.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Identifiers in run.json become folder names, index keys and a child's `parent_run`: they obey
# the experiment-name rule (no '/', no leading '.' or '-'), so that a damaged or hand-edited
# run.json cannot point a path outside the results folder. A run id adds '-<hash12>-v<N>'.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,139}$"
HASH_PATTERN = r"^[0-9a-f]{1,64}$"

RunStatus = Literal["running", "completed", "failed", "interrupted"]
StopReason = Literal[
    "max_epochs", "patience", "threshold", "non_finite", "max_steps", "interrupted"
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# Task metrics of a split and of a length bin alike (defaults None: metrics.json files written
# before they existed still validate).
StringBalancedAcc = Annotated[
    float | None,
    Field(
        default=None,
        description=(
            "Balanced whole-string accuracy: mean recall over the classes present (membership "
            "or final output); equal to string_acc when classes are balanced."
        ),
    ),
]
ClassBalancedAcc = Annotated[
    float | None,
    Field(
        default=None, description="Balanced prefix accuracy: mean recall over the classes present."
    ),
]
NextValidBaseline = Annotated[
    float | None,
    Field(
        default=None,
        description="next_valid of the best constant one-symbol predictor on the same positions.",
    ),
]
CharAcc = Annotated[
    float | None,
    Field(
        default=None,
        description=(
            "char_prediction: fraction of strings whose predicted legal-next set (logit > 0) "
            "equals the target set at every position (None for other tasks)."
        ),
    ),
]
CharBaseline = Annotated[
    float | None,
    Field(
        default=None,
        description="char_acc of the best constant set predictor (one fixed set everywhere).",
    ),
]
CharPosAcc = Annotated[
    float | None,
    Field(
        default=None,
        description="char_prediction: fraction of real positions whose predicted set is exact.",
    ),
]
CharPosBaseline = Annotated[
    float | None,
    Field(default=None, description="char_pos_acc of the best constant set predictor."),
]


class BinMetrics(_Record):
    """Metrics of the strings whose length lies in [lo, hi]."""

    lo: int = Field(description="Shortest string length in the bin (inclusive).")
    hi: int = Field(description="Longest string length in the bin (inclusive).")
    n_strings: int = Field(description="Strings in the bin.")
    string_acc: float | None = Field(
        description="Whole-string accuracy of the class head (membership or final output)."
    )
    string_baseline: float | None = Field(
        description="Majority-class baseline of whole-string accuracy in this bin."
    )
    class_acc: float | None = Field(
        description="Prefix accuracy of the class head (membership or output, every position)."
    )
    class_baseline: float | None = Field(description="Majority-class baseline of class_acc.")
    token_acc: float | None = Field(description="Next-token accuracy on next-token positions.")
    next_valid: float | None = Field(
        description="Fraction of live positions whose predicted next token is legal in the DFA."
    )
    state_acc: float | None = Field(description="DFA state accuracy.")
    string_balanced_acc: StringBalancedAcc
    class_balanced_acc: ClassBalancedAcc
    next_valid_baseline: NextValidBaseline
    char_acc: CharAcc
    char_baseline: CharBaseline
    char_pos_acc: CharPosAcc
    char_pos_baseline: CharPosBaseline


class SplitMetrics(_Record):
    """Metrics of one split (val, test or test_ood) for one checkpoint.

    A rate whose denominator is empty (e.g. no accepted string, so no next-token position)
    is None.
    """

    n_strings: int = Field(description="Strings evaluated.")
    loss: float = Field(description="Weighted total loss (as in training, without L1).")
    nll: float | None = Field(
        description="Next-token negative log-likelihood per next-token position."
    )
    token_acc: float | None = Field(description="Next-token accuracy on next-token positions.")
    next_valid: float | None = Field(
        description="Fraction of live positions whose predicted next token is legal in the DFA."
    )
    class_acc: float | None = Field(
        description="Prefix accuracy of the class head (membership or output) at real positions."
    )
    class_baseline: float | None = Field(description="Majority-class baseline of class_acc.")
    string_acc: float | None = Field(
        description="Whole-string accuracy of the class head (membership or final output)."
    )
    string_baseline: float | None = Field(description="Majority-class baseline of string_acc.")
    state_acc: float | None = Field(description="DFA state accuracy over every real position.")
    string_balanced_acc: StringBalancedAcc
    class_balanced_acc: ClassBalancedAcc
    next_valid_baseline: NextValidBaseline
    char_acc: CharAcc
    char_baseline: CharBaseline
    char_pos_acc: CharPosAcc
    char_pos_baseline: CharPosBaseline
    length_mean_acc: float | None = Field(
        default=None,
        description=(
            "Deletang et al.'s score: the whole-string accuracy (char_acc with task "
            "char_prediction, else string_acc) of each string length present, averaged over "
            "the lengths (each length weighs the same, however many strings it has)."
        ),
    )
    bins: list[BinMetrics] = Field(default_factory=list, description="Length-binned metrics.")


class CheckpointEval(_Record):
    """A checkpoint's evaluation on every split."""

    step: int = Field(description="Optimizer steps taken when the checkpoint was saved.")
    epoch: int = Field(description="Epochs completed when the checkpoint was saved.")
    val: SplitMetrics
    test: SplitMetrics
    test_ood: SplitMetrics | None = Field(default=None, description="None without an OOD split.")


class EarlyStopState(_Record):
    """Best-so-far tracking; saved in checkpoints so it survives resume."""

    monitor: str = Field(description="Monitored metric, e.g. 'val.string_acc'.")
    mode: Literal["max", "min"]
    best_value: float | None = Field(default=None, description="Best monitored value so far.")
    best_step: int | None = Field(default=None, description="Step of the best value.")
    best_epoch: int | None = Field(default=None, description="Epoch of the best value.")
    bad_epochs: int = Field(default=0, description="Evaluations since the last improvement.")


class Metrics(_Record):
    """metrics.json: the final summary of a run."""

    run_id: str = Field(pattern=IDENTIFIER_PATTERN)
    experiment: str = Field(pattern=IDENTIFIER_PATTERN)
    monitor: str = Field(description="Metric that chose the best checkpoint.")
    stop_reason: StopReason
    steps: int = Field(description="Optimizer steps taken.")
    epochs: int = Field(description="Epochs completed.")
    wall_time_s: float = Field(description="Training wall time, all sessions summed.")
    early_stop: EarlyStopState
    best: CheckpointEval
    last: CheckpointEval
    evaluated: Literal["best", "last"] = Field(
        default="best",
        description="The checkpoint the run reports (train.evaluate_checkpoint).",
    )


class HistoryRecord(_Record):
    """One line of logs/history.jsonl."""

    kind: Literal["train", "eval", "stop"] = Field(
        description="train: averages over the log interval; eval: validation; stop: why it ended."
    )
    step: int = Field(description="Optimizer steps taken so far.")
    epoch: int = Field(description="Epoch (0-based) the record belongs to.")
    time: float = Field(description="Unix time of writing (excluded from reproducibility checks).")
    losses: dict[str, float] | None = Field(default=None, description="Mean loss components.")
    lr: float | None = Field(default=None, description="Learning rate of the last step.")
    grad_norm: float | None = Field(default=None, description="Mean pre-clip gradient norm.")
    steps_per_s: float | None = Field(
        default=None, description="Throughput (excluded from reproducibility checks)."
    )
    metrics: dict[str, float] | None = Field(
        default=None, description="Validation metrics, e.g. {'val.string_acc': 0.98}."
    )
    improved: bool | None = Field(default=None, description="eval: the monitor improved.")
    stop_reason: StopReason | None = Field(default=None, description="stop: why training ended.")
    message: str | None = Field(default=None, description="stop: human-readable detail.")


TIMING_FIELDS = frozenset({"time", "steps_per_s"})


class CheckpointMeta(_Record):
    """Position and provenance stored (as JSON) inside every checkpoint."""

    format: Literal["fsmrun-ckpt-1"] = "fsmrun-ckpt-1"
    kind: Literal["last", "best"]
    step: int = Field(description="Optimizer steps taken.")
    epoch: int = Field(description="Epoch the next step belongs to.")
    batch_in_epoch: int = Field(description="Index of the next batch within that epoch.")
    epoch_done: bool = Field(description="Saved after the epoch's evaluation.")
    history_len: int = Field(description="Lines in history.jsonl when saved.")
    next_batch_fingerprint: str | None = Field(
        description="sha256 of the next batch's indices; checked on resume."
    )
    early_stop: EarlyStopState
    config_hash: str
    fsmrun_version: str
    wall_time_s: float = Field(description="Training wall time so far.")
    val_metrics: dict[str, float] | None = Field(
        default=None, description="Validation metrics at save time (flat)."
    )
    stop_reason: StopReason | None = Field(
        default=None,
        description="Set when the run's own stopping rule ended training at this checkpoint: "
        "a resume goes straight to finishing.",
    )


class EnvInfo(_Record):
    """env.json: where and how a run ran."""

    python: str
    platform: str
    torch: str
    numpy: str
    cuda: str | None = Field(description="CUDA version torch was built with (None: CPU build).")
    cudnn: int | None
    device: str = Field(description="Device used, e.g. 'cpu' or 'cuda:0'.")
    device_name: str
    fsmrun_version: str
    git_commit: str | None = Field(description="Commit of the fsmrun checkout, if any.")
    seed: int
    deterministic: bool
    amp: bool
    amp_dtype: str | None
    threads: int = Field(description="torch intra-op threads.")
    hostname: str


class RunHashes(_Record):
    config: str = Field(description="sha256 of the number-changing config (folder name prefix).")
    init_weights: str = Field(description="sha256 of the initial model state_dict.")
    corpus: str = Field(description="sha256 of the corpus content.")
    batch_order: str = Field(description="sha256 of the first epoch's batch order.")


TAG_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
MAX_TAG_VALUE, MAX_NOTE = 200, 10_000


class RunLabels(_Record):
    """labels.json: a run's tags and note, written beside its data files (which labelling
    never changes), so a completed run can be labelled at any time."""

    tags: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "key -> value; keys are 1-64 letters, digits, '_', '-', '.' (not starting with "
            "'.' or '-'), values one line of at most 200 characters."
        ),
    )
    note: str = Field(default="", max_length=MAX_NOTE, description="Free text about the run.")

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not re.fullmatch(TAG_KEY_PATTERN, key):
                raise ValueError(
                    f"tag key {key!r} cannot be used: 1 to 64 letters, digits, '_', '-' and "
                    f"'.', not starting with '.' or '-'"
                )
            if len(value) > MAX_TAG_VALUE or not value.isprintable():
                raise ValueError(
                    f"tag {key}: the value must be one printable line of at most "
                    f"{MAX_TAG_VALUE} characters"
                )
        return dict(sorted(tags.items()))


class RunRecord(_Record):
    """run.json: identity, status and provenance of one run."""

    run_id: str = Field(pattern=IDENTIFIER_PATTERN, description="'<experiment>-<hash12>-v<N>'.")
    experiment: str = Field(pattern=IDENTIFIER_PATTERN)
    config_hash: str = Field(pattern=HASH_PATTERN, description="sha256 of the config (hex).")
    version: int
    status: RunStatus
    command: list[str] = Field(description="argv that started the run (or last resumed it).")
    device: str
    amp: bool
    deterministic: bool
    created: float = Field(description="Unix time the run was created.")
    updated: float = Field(description="Unix time of the last status change.")
    heartbeat: float = Field(description="Unix time the training process last showed life.")
    pid: int | None = Field(description="Process id of the training process while running.")
    hostname: str
    hashes: RunHashes | None = Field(default=None, description="Set once the run is set up.")
    model_summary: str | None = None
    parameter_count: int | None = None
    steps: int = 0
    epochs: int = 0
    times_resumed: int = 0
    audit_verified: bool | None = Field(
        default=None, description="True once audit-determinism verified this config."
    )
    error: str | None = Field(default=None, description="Why the run failed, if it did.")
    parent_run: str | None = Field(
        default=None,
        pattern=IDENTIFIER_PATTERN,
        description="Run id this run extends (it started from its last.pt).",
    )
    parent_step: int | None = Field(
        default=None, description="Step of the parent's checkpoint this run started from."
    )
    checkpoint_fallbacks: list[str] = Field(
        default_factory=list,
        description="Damaged checkpoints skipped for their .prev copy when resuming.",
    )
