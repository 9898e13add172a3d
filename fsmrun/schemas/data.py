"""The language and corpus part of an experiment: `DataConfig` and its language sources
(regex, DFA table, AT&T file, random DFA), frozen Pydantic models validated at the edge."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from fsmrun.schemas._base import Frozen as _Frozen

# Characters with a meaning in fsmrun's regex syntax: an alphabet symbol may not be one.
REGEX_SYNTAX = ".|*+?()[]{}\\^$"

# The language sources of DataConfig: exactly one is set.
LANGUAGE_SOURCES = ("regex", "dfa", "att", "random_dfa")


def combining_mark_message(symbol: str) -> str:
    """Why a combining mark cannot be a symbol: it is drawn onto the character before it."""
    name = unicodedata.name(symbol, "unnamed")
    return (
        f"symbol U+{ord(symbol):04X} ({name}) is a combining mark: it joins the character "
        f"before it on screen, so a symbol would look like two or two like one; every symbol "
        f"must be one character as seen (use a precomposed letter such as 'é')"
    )


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

    @field_validator("transitions", mode="before")
    @classmethod
    def _check_transitions_shape(cls, value: Any) -> Any:
        # Before the union is tried: its own errors name both alternatives' internals.
        if isinstance(value, list):
            for number, row in enumerate(value, start=1):
                if not isinstance(row, list | tuple) or len(row) != 3:
                    fields = f"{len(row)} fields" if isinstance(row, list | tuple) else "no list"
                    raise ValueError(
                        f"row {number} {row!r} has {fields}; each row is [source, symbol, "
                        f'target], e.g. ["q0", "a", "q1"]'
                    )
        elif isinstance(value, dict):
            for state, row in value.items():
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{state} = {row!r} is not a table of symbol = target, e.g. "
                        f'{state} = {{ a = "q1" }}'
                    )
        else:
            raise ValueError(
                "give a table state -> { symbol = target } or a list of [source, symbol, "
                f"target] rows, not {type(value).__name__}"
            )
        return value


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
            if unicodedata.category(symbol).startswith("M"):
                raise ValueError(combining_mark_message(symbol))
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
