"""`<run>/analysis/analysis.json`: what `fsmrun analyze` found about one trained model: the
automaton extracted from it, its exact comparison with the run's minimal DFA, and the
per-layer linear probes for the DFA state beside a control task."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExtractionStatus = Literal["converged", "state_cap", "query_budget", "time_budget"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Extraction(_Doc):
    """The machine learned from the model's own predictions (AALpy)."""

    algorithm: str = Field(description="AALpy learner: kv (Kearns-Vazirani, Rivest-Schapire).")
    automaton_type: Literal["dfa", "moore"] = Field(
        description="dfa for membership tasks, moore (one output per state) for final_output."
    )
    status: ExtractionStatus = Field(
        description="converged: the last hypothesis agreed with the model on every equivalence "
        "word; otherwise the bound that stopped learning (the last hypothesis is kept)."
    )
    num_states: int | None = Field(
        description="States of the extracted minimal machine (None: stopped before any)."
    )
    rounds: int = Field(description="Equivalence queries asked (hypotheses checked).")
    membership_queries: int = Field(description="Learner queries that reached the model cache.")
    model_strings: int = Field(description="Strings the model labelled (every prefix at once).")
    model_calls: int = Field(description="Batched calls to the model.")
    equivalence_words: int = Field(description="Words in the last equivalence check.")
    fidelity: float = Field(
        description="Fraction of the prefixes of the last equivalence check's words on which "
        "the extracted machine and the model agree."
    )
    max_states: int = Field(description="State cap of this extraction.")
    max_model_strings: int = Field(description="Query budget: strings the model may label.")
    max_seconds: float = Field(description="Time budget in seconds.")
    seconds: float


class Comparison(_Doc):
    """The extracted machine against the run's minimal DFA, exactly (product automaton)."""

    equivalent: bool = Field(description="Same output on every string.")
    target_states: int
    extracted_states: int
    difference: str | None = Field(
        description="Shortest string on which they differ (first in alphabet order)."
    )
    target_output: int | None = Field(description="Target's output on `difference`.")
    extracted_output: int | None = Field(description="Extracted machine's output on it.")
    model_output: int | None = Field(description="The model's own output on it.")
    model_right: bool | None = Field(
        description="Whether the model agrees with the target on `difference`."
    )
    agreement: list[float] = Field(
        description="agreement[n]: exact fraction of all strings of length n (n = 0..max) on "
        "which extracted machine and target agree, counted on the product automaton."
    )
    max_length: int


class LayerProbe(_Doc):
    """Linear probes from one layer's hidden states to the DFA state, and to the control task."""

    layer: str = Field(description="embedding, then block.<i> or <cell>.<i> (e.g. lstm.0).")
    test_acc: float
    ood_acc: float | None
    control_test_acc: float
    control_ood_acc: float | None
    selectivity_test: float = Field(description="test_acc - control_test_acc.")
    selectivity_ood: float | None


class Probes(_Doc):
    """Per-layer probes; trained on training-split prefixes, scored on test and OOD prefixes."""

    control: str = Field(description="How the control labels are made.")
    train_positions: int
    test_positions: int
    ood_positions: int
    majority_test: float = Field(description="Accuracy of always the most common train state.")
    majority_ood: float | None
    layers: list[LayerProbe]


class AnalysisSettings(_Doc):
    """The options an analysis ran with (checkpoint resolved): `fsmrun analyze` of several runs
    skips a run whose analysis has the same settings and is newer than its checkpoint."""

    checkpoint: Literal["best", "last"]
    max_states: int
    max_model_strings: int
    max_seconds: float
    max_length: int | None = Field(description="None: the run's OOD maximum length.")
    probes: bool
    probe_positions: int
    figures: bool
    fmt: str


class AnalysisReport(_Doc):
    """One run's analysis: extraction, exact comparison and probes."""

    run_id: str
    checkpoint: Literal["best", "last"]
    task: str
    extraction: Extraction
    comparison: Comparison | None = Field(
        description="None when extraction stopped before a first hypothesis."
    )
    probes: Probes | None = Field(description="None when probes were not asked for.")
    seconds: float = Field(description="Wall time of the whole analysis.")
    figures: list[str] = Field(description="Figure files written in analysis/.")
    notices: list[str] = Field(description="Figures skipped and why.")
    settings: AnalysisSettings | None = Field(
        default=None, description="What it ran with (None: written before settings were kept)."
    )
