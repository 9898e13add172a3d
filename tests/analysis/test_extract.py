"""Extraction from a black box that computes the target exactly recovers the target for every
built-in language; budgets end extraction with their status; one model call labels prefixes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fsmrun.analysis.extract import (
    ExtractionBudget,
    PrefixOracle,
    _run_table,
    extract_machine,
)
from fsmrun.experiments import list_experiments, load_experiment
from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import DFA, compile_regex


def exact_model(dfa: DFA):
    """A 'model' that labels every prefix exactly as the DFA does (vectorised)."""

    def predict(words: Sequence[str]) -> list[np.ndarray]:
        return _run_table(dfa, list(words))

    return predict


@pytest.mark.parametrize("name", list_experiments())
def test_an_exact_model_of_each_builtin_language_extracts_to_its_minimal_dfa(name):
    exp = load_experiment(name)
    target = build_dfa(exp.data)
    result = extract_machine(
        exact_model(target),
        target,
        moore=exp.data.task == "final_output",
        fixed_words=[],
        max_length=30,
        rng=np.random.default_rng(0),
        random_words=300,
        walks_per_state=5,
    )
    assert result.status == "converged"
    assert result.fidelity == 1.0
    # Both canonical and minimal: equal machines give identical JSON.
    assert result.machine.to_json() == target.to_json()


def test_the_state_cap_ends_extraction_with_the_last_hypothesis_kept():
    target = compile_regex("(a|b)*a(a|b){4}", "ab")  # 32 states
    result = extract_machine(
        exact_model(target),
        target,
        moore=False,
        fixed_words=[],
        max_length=20,
        rng=np.random.default_rng(0),
        budget=ExtractionBudget(max_states=4),
        random_words=200,
    )
    assert result.status == "state_cap"
    assert result.machine is not None and result.machine.num_states > 4


def test_the_query_budget_ends_extraction_before_any_hypothesis():
    target = compile_regex("b*(ab*ab*)*", "ab")
    # The first batch (all 2^12 words of length 12) is over a budget of 100 strings.
    result = extract_machine(
        exact_model(target),
        target,
        moore=False,
        fixed_words=[],
        max_length=20,
        rng=np.random.default_rng(0),
        budget=ExtractionBudget(max_model_strings=100),
        random_words=10,
    )
    assert (result.status, result.machine, result.rounds) == ("query_budget", None, 0)


def test_one_model_string_labels_all_its_prefixes():
    target = compile_regex("b*(ab*ab*)*", "ab")
    oracle = PrefixOracle(exact_model(target), ExtractionBudget())
    assert oracle.label("abab") == 1
    # "", "a", "ab", "aba" now come from the cache: no further model string.
    assert [oracle.label(w) for w in ("", "a", "ab", "aba")] == [1, 0, 0, 1]
    assert (oracle.model_strings, oracle.model_calls) == (1, 1)
