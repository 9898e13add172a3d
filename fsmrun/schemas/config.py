"""Experiment configuration: frozen Pydantic models validated once at the edge.

`ExperimentConfig` composes `DataConfig`, `ModelConfig` and `TrainConfig`; every field that
changes the numbers is part of `config_hash` (see `fsmrun.base.seeding`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from fsmrun.schemas._base import Frozen as _Frozen
from fsmrun.schemas.data import (  # noqa: F401  (re-exported: the config module is the API)
    LANGUAGE_SOURCES,
    REGEX_SYNTAX,
    AttConfig,
    DataConfig,
    DfaTableConfig,
    RandomDfaConfig,
)

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
    "length_mean_acc",
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


# ModelConfig's fields of the RNN cell alone, with their defaults: refused at another value for
# other archs, and left out of the dump (so of the hash) at the default.
_RNN_ONLY = {"rnn_nonlinearity": "tanh", "rnn_init": "torch"}


class ModelConfig(_Frozen):
    """Sequence model: one backbone under next-token, class, state (and legal-next) heads."""

    arch: Literal["transformer", "lstm", "gru", "rnn"] = Field(
        default="transformer",
        description=(
            "Causal transformer, or a recurrent baseline: LSTM, GRU or vanilla RNN (tanh or relu)."
        ),
    )
    causal: bool = Field(
        default=True,
        description=(
            "Transformer attention: causal (each position sees its prefix), or false for a "
            "non-causal encoder (bidirectional attention over the whole string, the answer read "
            "at a query token appended after it, as in Deletang et al.): then only the "
            "whole-string class is defined (class_loss_on = final, no next-token or state loss)."
        ),
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
    pos_encoding: Literal["learned", "sinusoidal", "rope", "alibi", "relative", "none"] = Field(
        default="rope",
        description="Positional encoding (transformer only): learned or sinusoidal absolute "
        "embeddings, rotary (rope), ALiBi linear attention biases (alibi), Transformer-XL "
        "relative encodings (relative: sinusoids of the distance i - j, projected, with the "
        "content and position biases u and v), or none.",
    )
    factorized_rank: int | None = Field(
        default=None, ge=1, description="Rank of the factorized embedding E = U @ V (None: plain)."
    )
    embed_init_std: float = Field(
        default=0.02,
        gt=0.0,
        description=(
            "Standard deviation of the token embedding's initialisation (0.02, GPT-2's, suits "
            "the transformer; a recurrent cell reads the embeddings raw, and 1.0, torch's "
            "nn.Embedding default, gives it inputs of unit scale)."
        ),
    )
    rnn_nonlinearity: Literal["tanh", "relu"] = Field(
        default="tanh",
        description=(
            "The RNN cell's activation (arch = rnn only): tanh, torch's default, or relu, the "
            "cell of Haiku's VanillaRNN that Deletang et al. call RNN."
        ),
    )
    rnn_init: Literal["torch", "haiku"] = Field(
        default="torch",
        description=(
            "The RNN cell's initialisation (arch = rnn only): torch (every weight and bias "
            "U(-1/sqrt(C), 1/sqrt(C))) or haiku (hk.Linear's, as in Haiku's VanillaRNN: weights "
            "normal with sd 1/sqrt(fan-in) truncated at 2 sd, biases 0)."
        ),
    )
    tie_embeddings: bool = Field(
        default=False, description="Share the token embedding with the next-token head."
    )
    bias: bool = Field(
        default=True, description="Biases in linear layers and norms (recurrent cells keep theirs)."
    )

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        for name, default in _RNN_ONLY.items():
            value = getattr(self, name)
            if value != default and self.arch != "rnn":
                # Ignored by other cells, it would still change the config hash: refuse it.
                raise ValueError(
                    f"{name} ({value}) applies to arch = rnn only (arch is {self.arch}): "
                    f"leave it at {default}"
                )
        if self.arch != "transformer":
            return self  # heads and positions only shape the transformer
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError("rope needs an even head dimension (d_model / n_heads)")
        if self.pos_encoding == "relative" and self.d_model % 2 != 0:
            raise ValueError("relative positions need an even d_model (sinusoid pairs)")
        return self

    @model_serializer(mode="wrap")
    def _drop_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Fields added after configs were hashed stay out of the dump at their defaults.
        doc = handler(self)
        for name, default in (("causal", True), ("embed_init_std", 0.02), *_RNN_ONLY.items()):
            if doc.get(name) == default:
                del doc[name]
        return doc


_Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class TrainConfig(_Frozen):
    """Optimisation, losses, early stopping, checkpointing and precision.

    Every float must be finite: inf and NaN are rejected here, not found mid-run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

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
    legal_next_eos: bool = Field(
        default=True,
        description=(
            "The legal-next set carries the end bit (EOS legal when the prefix is accepted); "
            "false trains and scores the symbols only, as in Bhattamishra et al. 2020."
        ),
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
    sampling: Literal["corpus", "stream"] = Field(
        default="corpus",
        description=(
            "Training batches: from the fixed training corpus (corpus), or drawn afresh at every "
            "step (stream, as in Deletang et al.: one length uniform in min_len..max_len per "
            "batch, each string uniform over the alphabet^length, repeats allowed), a pure "
            "function of (seed, step), so resume and audits stay exact."
        ),
    )
    stream_steps: int = Field(
        default=100,
        ge=1,
        description="Steps per epoch (between validations) with sampling = stream.",
    )
    evaluate_checkpoint: Literal["best", "last"] = Field(
        default="best",
        description=(
            "The checkpoint a run's summary and reports use: the best on validation (best) or "
            "the final parameters (last, as in Deletang et al.)."
        ),
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
        for name, default in (
            ("class_loss_on", "all"),
            ("lambda_legal", 1.0),
            ("sampling", "corpus"),
            ("stream_steps", 100),
            ("evaluate_checkpoint", "best"),
            ("legal_next_eos", True),
        ):
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
    def _check_encoder(self) -> ExperimentConfig:
        if self.model.causal or self.model.arch != "transformer":
            return self
        problems = []
        if self.data.task == "char_prediction":
            problems.append("data.task = char_prediction (use membership or final_output)")
        if self.train.class_loss_on != "final":
            problems.append("train.class_loss_on must be final")
        if self.train.lambda_next or self.train.lambda_state:
            problems.append("train.lambda_next and train.lambda_state must be 0")
        if problems:
            raise ValueError(
                "a non-causal encoder (model.causal = false) sees the whole string at every "
                "position, so only the whole-string class is defined: " + "; ".join(problems)
            )
        return self

    @model_validator(mode="after")
    def _check_lengths(self) -> ExperimentConfig:
        longest = max(self.data.max_len, self.data.ood_max_len if self.data.n_test_ood else 0)
        # The encoder appends a query token after the string.
        extra = 1 if not self.model.causal and self.model.arch == "transformer" else 0
        if self.model.pos_encoding == "learned" and longest + 1 + extra > self.model.max_len:
            raise ValueError(
                f"model.max_len ({self.model.max_len}) is shorter than the longest input "
                f"({longest + 1 + extra} = BOS + {longest} symbols"
                f"{' + query' if extra else ''}) with learned positions"
            )
        return self
