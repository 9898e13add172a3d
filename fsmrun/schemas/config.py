"""Experiment configuration: frozen Pydantic models validated once at the edge.

`ExperimentConfig` composes `DataConfig`, `ModelConfig` and `TrainConfig`; every field that
changes the numbers is part of `config_hash` (see `fsmrun.core.determinism`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

# Characters with a meaning in fsmrun's regex syntax: an alphabet symbol may not be one.
REGEX_SYNTAX = ".|*+?()[]{}\\^$"

# Scalar validation metrics (fields of `SplitMetrics` that `flat_metrics` reports), the
# names `train.monitor` may take as 'val.<name>'. Kept here so configs validate without torch.
MONITOR_METRICS = (
    "loss",
    "nll",
    "token_acc",
    "next_valid",
    "next_valid_baseline",
    "class_acc",
    "class_baseline",
    "class_balanced_acc",
    "string_acc",
    "string_baseline",
    "string_balanced_acc",
    "state_acc",
    "char_acc",
    "char_baseline",
    "char_pos_acc",
    "char_pos_baseline",
)
# Metrics of the class head (membership / final output) and of the legal-next head.
CLASS_METRICS = tuple(m for m in MONITOR_METRICS if m.startswith(("class_", "string_")))
CHAR_METRICS = tuple(m for m in MONITOR_METRICS if m.startswith("char_"))


# What the results root holds beside experiment folders: no experiment may be named so.
# (registry.sqlite also stands for its -wal, -shm and -journal companions).
RESERVED_NAMES = ("audits", "plots", "sweeps", "registry.sqlite")
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
NAME_RULE = (
    "a name is one folder name of 1 to at most 100 characters: letters, digits, '_', '-' and "
    "'.', not starting with '.' or '-', not audits, plots or sweeps, and not starting with "
    "registry.sqlite"
)
MAX_WARMUP_STEPS = 1_000_000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The language sources of DataConfig: exactly one is set.
LANGUAGE_SOURCES = ("regex", "dfa", "att", "random_dfa")


class DfaTableConfig(_Frozen):
    """An explicit transition table (inline in TOML as `[data.dfa]`).

    Give `accepting` for membership or `outputs` for a Moore machine, not both. A missing
    transition goes to an added dead state: rejecting for membership, output `dead_output`
    for a Moore machine (which must otherwise be total).
    """

    states: list[str] = Field(min_length=1, description="State names.")
    start: str = Field(description="Name of the start state.")
    transitions: dict[str, dict[str, str]] | list[tuple[str, str, str]] = Field(
        description=(
            "Either a table state -> {symbol -> state} or a list of [source, symbol, target]; "
            "a missing transition goes to a dead state."
        )
    )
    accepting: list[str] | None = Field(
        default=None, description="Accepting states (membership); the others reject."
    )
    outputs: dict[str, int | str] | None = Field(
        default=None,
        description=(
            "Moore machine: state -> output class, an index into output_names (or 0..k-1) or "
            "an output name; every state needs one."
        ),
    )
    output_names: list[str] | None = Field(
        default=None,
        description="Names of the output classes, in class order (default '0'..'k-1').",
    )
    dead_output: int | str | None = Field(
        default=None,
        description="Moore machine: output of the dead state that missing transitions go to.",
    )


class AttConfig(_Frozen):
    """An AT&T text automaton file, as MLRegTest publishes its languages."""

    path: str = Field(
        description=(
            "AT&T text file: arc lines 'src dst symbol [weight]' or 'src dst in out [weight]', "
            "final-state lines 'state [weight]'; the first arc's source is the start state."
        )
    )
    isymbols: str | None = Field(
        default=None,
        description="Symbol table file ('symbol id' lines, id 0 = epsilon); fixes the alphabet.",
    )


class RandomDfaConfig(_Frozen):
    """A random minimal DFA over `alphabet` with exactly `num_states` reachable states."""

    num_states: int = Field(ge=1, le=10_000, description="Exact number of states.")
    accepting_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Chance of each state being accepting."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the automaton (not of the corpus).")


class DataConfig(_Frozen):
    """The language, the task learned on it and the corpus drawn from it.

    Exactly one language source: `regex`, `dfa`, `att` or `random_dfa`. Unset sources, and
    `task` / `sampling` at their defaults, are left out of the dump (and so of config_hash),
    so configs written before those fields existed keep their hash.
    """

    task: Literal["membership", "final_output", "char_prediction"] = Field(
        default="membership",
        description=(
            "What is learned and scored. membership: is each prefix (and the string) accepted; "
            "final_output: the output class of the state a prefix ends in (a k-way head, k = the "
            "machine's number of outputs; membership when k = 2); char_prediction: the set of "
            "legal next symbols at every position (EOS when the prefix is accepted), multi-label, "
            "a string correct only if every position's set is exactly right."
        ),
    )
    sampling: Literal["balanced", "uniform", "positives"] = Field(
        default="balanced",
        description=(
            "How strings are drawn. balanced: positive_fraction accepted strings, the rest "
            "near misses and uniform rejected strings; uniform: a length uniform in the range, "
            "then a string uniform over all strings of that length, labelled by the machine; "
            "positives: accepted strings only (output != 0). Strings stay distinct in every mode."
        ),
    )
    regex: str | None = Field(
        default=None, description="Regular expression (full match) defining the language."
    )
    dfa: DfaTableConfig | None = Field(
        default=None, description="Explicit transition table (membership or Moore outputs)."
    )
    att: AttConfig | None = Field(default=None, description="AT&T text automaton file.")
    random_dfa: RandomDfaConfig | None = Field(
        default=None, description="Random minimal DFA over `alphabet`."
    )
    alphabet: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Alphabet symbols, one character each, in vocabulary order. Required for regex and "
            "random_dfa; for dfa and att it defaults to the symbol table's order, else the "
            "sorted symbols of the transitions, and when given must contain them all. Symbols are "
            "distinct printable characters, neither whitespace nor one of " + REGEX_SYNTAX + "."
        ),
    )
    min_len: int = Field(default=1, ge=0, description="Shortest string length in train/val/test.")
    max_len: int = Field(default=20, ge=0, description="Longest string length in train/val/test.")
    ood_min_len: int = Field(default=21, ge=0, description="Shortest string length in test_ood.")
    ood_max_len: int = Field(default=40, ge=0, description="Longest string length in test_ood.")
    n_train: int = Field(default=2000, ge=1, description="Number of training strings.")
    n_val: int = Field(default=300, ge=1, description="Number of validation strings.")
    n_test: int = Field(default=300, ge=1, description="Number of test strings.")
    n_test_ood: int = Field(default=300, ge=0, description="Number of out-of-distribution strings.")
    positive_fraction: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Fraction of strings that are in the language."
    )
    near_miss_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Fraction of negatives made by a small edit of a positive (the rest uniform).",
    )
    max_states: int = Field(
        default=10_000, ge=1, description="Cap on minimal DFA states; compilation fails above it."
    )

    @field_validator("alphabet")
    @classmethod
    def _check_symbols(cls, alphabet: str | None) -> str | None:
        if alphabet is None:
            return None
        seen = set()
        for symbol in alphabet:
            if symbol in REGEX_SYNTAX or symbol.isspace() or not symbol.isprintable():
                raise ValueError(
                    f"symbol {symbol!r} is not allowed: alphabet symbols are distinct printable "
                    f"characters, neither whitespace nor one of {REGEX_SYNTAX}"
                )
            if symbol in seen:
                raise ValueError(f"symbol {symbol!r} appears twice in {alphabet!r}")
            seen.add(symbol)
        return alphabet

    @model_validator(mode="after")
    def _check_ranges(self) -> DataConfig:
        given = [name for name in LANGUAGE_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one language source of {', '.join(LANGUAGE_SOURCES)} "
                f"(got {', '.join(given) if given else 'none'})"
            )
        if self.alphabet is None and given[0] in ("regex", "random_dfa"):
            raise ValueError(f"alphabet is required with {given[0]}")
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) exceeds max_len ({self.max_len})")
        if self.n_test_ood > 0:
            if self.ood_min_len > self.ood_max_len:
                raise ValueError(
                    f"ood_min_len ({self.ood_min_len}) exceeds ood_max_len ({self.ood_max_len})"
                )
            if self.ood_min_len <= self.max_len:
                raise ValueError(
                    f"ood_min_len ({self.ood_min_len}) must exceed max_len ({self.max_len})"
                )
        return self

    @property
    def source_label(self) -> str:
        """The language source in a few words, for messages and tables."""
        if self.regex is not None:
            return f"regex {self.regex!r}"
        if self.dfa is not None:
            return f"DFA table ({len(self.dfa.states)} states)"
        if self.att is not None:
            return f"AT&T file {self.att.path}"
        assert self.random_dfa is not None
        r = self.random_dfa
        return f"random DFA ({r.num_states} states, seed {r.seed})"

    @model_serializer(mode="wrap")
    def _drop_unset_sources(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        doc = handler(self)
        for name in (*LANGUAGE_SOURCES, "alphabet"):
            if doc.get(name, 0) is None:
                del doc[name]
        for name, default in (("task", "membership"), ("sampling", "balanced")):
            if doc.get(name) == default:
                del doc[name]
        return doc


class ModelConfig(_Frozen):
    """Sequence model: one backbone under next-token, class, state (and legal-next) heads."""

    arch: Literal["transformer", "lstm", "gru", "rnn"] = Field(
        default="transformer",
        description="Causal transformer, or a recurrent baseline: LSTM, GRU or vanilla tanh RNN.",
    )
    d_model: int = Field(default=64, ge=1, description="Width of embeddings and hidden states.")
    n_layers: int = Field(
        default=2, ge=1, description="Number of transformer blocks or recurrent layers."
    )
    n_heads: int = Field(default=4, ge=1, description="Attention heads (transformer only).")
    d_ff: int = Field(
        default=256, ge=1, description="Hidden width of the feed-forward block (transformer only)."
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout probability.")
    max_len: int = Field(
        default=512,
        ge=1,
        description="Longest input (BOS + string) the model accepts with learned positions.",
    )
    pos_encoding: Literal["learned", "sinusoidal", "rope", "alibi", "none"] = Field(
        default="rope",
        description="Positional encoding (transformer only): learned or sinusoidal absolute "
        "embeddings, rotary (rope), ALiBi linear attention biases (alibi), or none.",
    )
    factorized_rank: int | None = Field(
        default=None, ge=1, description="Rank of the factorized embedding E = U @ V (None: plain)."
    )
    tie_embeddings: bool = Field(
        default=False, description="Share the token embedding with the next-token head."
    )
    bias: bool = Field(
        default=True, description="Biases in linear layers and norms (recurrent cells keep theirs)."
    )

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.arch != "transformer":
            return self  # heads and positions only shape the transformer
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError("rope needs an even head dimension (d_model / n_heads)")
        return self


_Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class TrainConfig(_Frozen):
    """Optimisation, losses, early stopping, checkpointing and precision.

    Every float must be finite: inf and NaN are rejected here, not found mid-run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    epochs: int = Field(default=20, ge=1, description="Maximum number of epochs.")
    batch_size: int = Field(default=64, ge=1, description="Strings per batch.")
    lr: float = Field(default=3e-3, gt=0.0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.01, ge=0.0, description="AdamW weight decay.")
    decay_all_params: bool = Field(
        default=False,
        description="Apply weight decay to biases, norms and embeddings too (off: matrices only).",
    )
    betas: tuple[_Beta, _Beta] = Field(
        default=(0.9, 0.98), description="AdamW betas, each in [0, 1)."
    )
    eps: float = Field(default=1e-8, gt=0.0, description="AdamW epsilon.")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        default="cosine", description="Learning-rate decay after warmup."
    )
    warmup_steps: int = Field(
        default=50,
        ge=0,
        le=MAX_WARMUP_STEPS,
        description="Linear warmup steps (at most 1,000,000, which catches typos such as 1e8).",
    )
    min_lr_ratio: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Final learning rate as a fraction of lr."
    )
    grad_clip: float | None = Field(
        default=1.0, gt=0.0, description="Max global gradient norm (None: no clipping)."
    )
    lambda_next: float = Field(default=1.0, ge=0.0, description="Weight of the next-token loss.")
    lambda_class: float = Field(default=1.0, ge=0.0, description="Weight of the class loss.")
    lambda_state: float = Field(default=0.5, ge=0.0, description="Weight of the state loss.")
    lambda_l1_u: float = Field(
        default=0.0, ge=0.0, description="Weight of the L1 penalty on the factorized embedding U."
    )
    next_token_on_all: bool = Field(
        default=False,
        description="Next-token loss on all strings (default: accepted strings only).",
    )
    class_loss_on: Literal["all", "final"] = Field(
        default="all",
        description=(
            "Positions of the class loss: every prefix (all) or only the whole string, "
            "t = n (final, as in Deletang et al.'s sequence-to-output tasks)."
        ),
    )
    lambda_legal: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of the legal-next-set BCE loss (task char_prediction only).",
    )
    monitor: str = Field(
        default="val.string_acc",
        description=(
            "Validation metric for best checkpoint and early stopping: 'val.<metric>', "
            "<metric> one of " + ", ".join(MONITOR_METRICS) + "."
        ),
        json_schema_extra={"enum": [f"val.{name}" for name in MONITOR_METRICS]},
    )
    monitor_mode: Literal["max", "min"] = Field(
        default="max", description="Whether a larger or smaller monitored value is better."
    )
    min_delta: float = Field(
        default=0.0, ge=0.0, description="Smallest change that counts as an improvement."
    )
    patience: int | None = Field(
        default=5, ge=1, description="Epochs without improvement before stopping (None: never)."
    )
    stop_threshold: float | None = Field(
        default=None, description="Stop once the monitored metric reaches this value."
    )
    save_every: int | None = Field(
        default=None, ge=1, description="Also save last.pt every N steps (always at epoch end)."
    )
    log_every: int = Field(
        default=25, ge=1, description="Steps between logged training records (host syncs)."
    )
    length_bins: list[int] | None = Field(
        default=None,
        description="Edges of length bins for binned metrics (None: derived from the data).",
    )
    bucket_by_length: bool = Field(
        default=False, description="Group similar lengths into batches to cut padding."
    )
    capture_epochs: list[int] = Field(
        default_factory=list,
        description=(
            "Epochs after which attention maps and hidden states of one batch are saved to "
            "captures/epoch_NNNN.pt; counted from 1 as on the console, each in 1..epochs."
        ),
    )
    capture_batch_size: int = Field(
        default=8, ge=1, description="Strings in the fixed capture batch."
    )
    amp: bool = Field(default=False, description="Mixed precision (bfloat16, or float16 + scaler).")
    deterministic: bool = Field(
        default=True, description="Deterministic algorithms (CUDA: slower kernels, exact repeats)."
    )

    @field_validator("monitor")
    @classmethod
    def _check_monitor(cls, monitor: str) -> str:
        valid = [f"val.{name}" for name in MONITOR_METRICS]
        if monitor not in valid:
            raise ValueError(f"{monitor!r} is not a validation metric; valid: {', '.join(valid)}")
        return monitor

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        outside = [e for e in self.capture_epochs if not 1 <= e <= self.epochs]
        if outside:
            raise ValueError(
                f"capture_epochs {outside} must lie in 1 to {self.epochs} (epochs count from 1, "
                "as on the console)"
            )
        if self.length_bins is not None and sorted(self.length_bins) != self.length_bins:
            raise ValueError("length_bins must be increasing")
        return self

    @model_serializer(mode="wrap")
    def _drop_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Fields added after configs were hashed stay out of the dump at their defaults.
        doc = handler(self)
        for name, default in (("class_loss_on", "all"), ("lambda_legal", 1.0)):
            if doc.get(name) == default:
                del doc[name]
        return doc


class ExperimentConfig(_Frozen):
    """One experiment: a language, a corpus, a model and how to train it."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Experiment name, the folder under the results root: " + NAME_RULE + ".",
    )
    description: str = Field(default="", description="What the experiment is about.")
    seed: int = Field(default=0, ge=0, description="The one seed all random streams derive from.")
    data: DataConfig = Field(description="Language and corpus.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, name: Any) -> Any:
        # Before the pattern check, so every bad name gets this one message.
        if isinstance(name, str) and (
            not re.fullmatch(NAME_PATTERN, name)
            or name.casefold() in RESERVED_NAMES
            or name.casefold().startswith("registry.sqlite")
        ):
            shown = repr(name) if len(name) <= 100 else f"a name of {len(name)} characters"
            raise ValueError(f"{shown} cannot be used: {NAME_RULE}")
        return name

    @model_validator(mode="after")
    def _check_task(self) -> ExperimentConfig:
        metric = self.train.monitor.removeprefix("val.")
        if self.data.task == "char_prediction" and metric in CLASS_METRICS:
            raise ValueError(
                f"task char_prediction is scored by the legal-next head, not the class head: set "
                f"train.monitor to one of {', '.join('val.' + m for m in CHAR_METRICS)} "
                f"(or val.loss)"
            )
        if self.data.task != "char_prediction" and metric in CHAR_METRICS:
            raise ValueError(
                f"train.monitor {self.train.monitor} needs data.task = 'char_prediction' "
                f"(task is {self.data.task!r})"
            )
        return self

    @model_validator(mode="after")
    def _check_lengths(self) -> ExperimentConfig:
        longest = max(self.data.max_len, self.data.ood_max_len if self.data.n_test_ood else 0)
        if self.model.pos_encoding == "learned" and longest + 1 > self.model.max_len:
            raise ValueError(
                f"model.max_len ({self.model.max_len}) is shorter than the longest input "
                f"({longest + 1} = BOS + {longest} symbols) with learned positions"
            )
        return self
