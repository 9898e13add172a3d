"""Inputs a new user trips over, refused or read the way the user meant: a state cap proved
before anything is built, AT&T `inf` final weights, combining marks, booleans as numbers and
short DFA table rows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fsmrun.lang import fsm
from fsmrun.lang.fsm import StateLimitError, compile_regex
from fsmrun.lang.regex_parse import Parser, longest_length, min_dfa_states, shortest_length
from fsmrun.lang.sources import SourceError, parse_att
from fsmrun.schemas.config import DataConfig, ExperimentConfig


def _ast(pattern: str, alphabet: str = "ab"):
    return Parser(pattern, tuple(alphabet)).parse()


@pytest.mark.parametrize(
    ("pattern", "shortest", "longest"),
    [
        ("", 0, 0),
        ("a", 1, 1),
        ("a{3,5}b", 4, 6),
        ("(ab|a)*", 0, float("inf")),
        ("(ab){2}|b", 1, 4),
        ("[^ab]", None, None),  # matches nothing
        ("[^ab]*", 0, 0),
        ("a[^ab]|bb", 2, 2),
    ],
)
def test_shortest_and_longest_lengths_of_a_pattern(pattern, shortest, longest):
    assert shortest_length(_ast(pattern)) == shortest
    assert longest_length(_ast(pattern)) == longest


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "a",
        "a{7}",
        "(a|b){0,6}",
        "(a|b)*ab",
        "(ab){3}(a|b)*",
        "a{2,4}|b{5}",
        "[^ab]",
        "(a*b){4}",
        "(a{7})*",
        "(a{3}b)*",
        "(ab|ba)*",
        "b*(a{5})+",
        "(a?b?){0,3}",
        "((a{4})*b)*",
    ],
)
def test_the_state_lower_bound_never_exceeds_the_minimal_dfa(pattern):
    assert min_dfa_states(_ast(pattern)) <= compile_regex(pattern, "ab").num_states


def test_a_pattern_proved_over_the_cap_is_refused_before_any_automaton_is_built(monkeypatch):
    def no_building(*args, **kwargs):
        raise AssertionError("an automaton was built")

    monkeypatch.setattr(fsm, "ThompsonNFA", no_building)
    with pytest.raises(StateLimitError, match="at least 100,001 states"):
        compile_regex("a{100000}", "ab")
    with pytest.raises(StateLimitError, match="at least 20,001 states"):
        compile_regex("(a|b){0,20000}", "ab")
    # an infinite language whose shortest non-empty string is 100,000 symbols long
    with pytest.raises(StateLimitError, match="at least 100,000 states"):
        compile_regex("(a{100000})*", "ab")


def test_the_shortest_non_empty_string_bounds_a_star_of_a_long_word():
    assert min_dfa_states(_ast("(a{7})*")) == 7 == compile_regex("(a{7})*", "a").num_states
    assert min_dfa_states(_ast("(a{3}b)*")) == 4


def test_a_final_weight_inf_is_not_final_as_in_openfst():
    # 0 -a-> 1 -b-> 2; state 2's weight inf is the semiring zero: only "a" is accepted.
    dfa = parse_att("0 1 a\n1 2 b\n1\t0\n2\tinf\n")
    assert dfa == compile_regex("a", "ab")
    assert parse_att("0 1 a\n1 2 b\n1\t0\n2\t3.5\n") == compile_regex("a|ab", "ab")


def test_a_weight_nan_is_refused():
    with pytest.raises(SourceError, match="f.att:2: weight 'nan' is not a number"):
        parse_att("0 1 a\n1 nan\n", source="f.att")


def test_a_combining_mark_is_not_a_symbol():
    with pytest.raises(ValueError, match="U\\+0301 .*combining mark"):
        compile_regex("a", "a\u0301")
    with pytest.raises(ValidationError, match="combining mark"):
        DataConfig(regex="a", alphabet="ab\u0301")
    assert compile_regex("\u00e9", "\u00e9a").num_states == 3  # precomposed: one symbol


TINY = {"name": "x", "data": {"regex": "a*", "alphabet": "ab"}}


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("data", "n_train"),
        ("train", "epochs"),
        ("train", "lr"),
        ("model", "d_model"),
        (None, "seed"),
    ],
)
def test_a_boolean_is_not_a_number(section, key):
    doc = (
        {**TINY, section: {**TINY.get(section, {}), key: True}} if section else {**TINY, key: True}
    )
    with pytest.raises(ValidationError, match=f"{key} = true is a boolean; {key} takes a number"):
        ExperimentConfig.model_validate(doc)


def test_booleans_stay_booleans_where_a_switch_is_meant():
    exp = ExperimentConfig.model_validate({**TINY, "train": {"amp": True, "deterministic": False}})
    assert exp.train.amp is True and exp.train.deterministic is False


@pytest.mark.parametrize(
    ("transitions", "message"),
    [
        ([["q0", "a"]], "row 1 ['q0', 'a'] has 2 fields; each row is [source, symbol, target]"),
        ({"q0": ["a", "q0"]}, "q0 = ['a', 'q0'] is not a table of symbol = target"),
        ("q0 a q0", "give a table state -> { symbol = target } or a list"),
    ],
)
def test_a_malformed_transition_table_says_what_a_row_looks_like(transitions, message):
    table = {"states": ["q0"], "start": "q0", "accepting": ["q0"], "transitions": transitions}
    with pytest.raises(ValidationError) as err:
        DataConfig(dfa=table, alphabet="ab")
    assert message in str(err.value)
    assert "dict[str" not in str(err.value)
