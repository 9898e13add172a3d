"""Language sources (DFA tables, AT&T files, random DFAs) against brute-force references."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from pydantic import ValidationError

from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import DFA, compile_regex
from fsmrun.lang.sources import (
    SourceError,
    dfa_from_table,
    parse_att,
    random_dfa,
    read_att,
)
from fsmrun.schemas.config import DataConfig, DfaTableConfig

# "ends in ab" over {a, b}: the regex (a|b)*ab, written three more ways below.
ENDS_AB = {
    "states": ["start", "saw_a", "saw_ab"],
    "start": "start",
    "accepting": ["saw_ab"],
    "transitions": {
        "start": {"a": "saw_a", "b": "start"},
        "saw_a": {"a": "saw_a", "b": "saw_ab"},
        "saw_ab": {"a": "saw_a", "b": "start"},
    },
}
# The same language as an MLRegTest-style transducer file (in = out) with a symbol table, an
# unreachable state 7 and a redundant copy (state 3 behaves like state 0).
ENDS_AB_ATT = "0\t1\ta\ta\n0\t3\tb\tb\n1\t1\ta\ta\n1\t2\tb\tb\n2\t1\ta\ta\n2\t0\tb\tb\n3\t1\ta\ta\n"
ENDS_AB_ATT += "3\t3\tb\tb\n7\t0\ta\ta\n2\n"
SYMBOLS = "<EPS>\t0\na\t97\nb\t98\n"


def strings_up_to(alphabet: str, n: int) -> list[str]:
    return ["".join(t) for k in range(n + 1) for t in itertools.product(alphabet, repeat=k)]


def naive_run(table: dict, s: str) -> list[str]:
    """States of a hand-written table after each prefix (None once a transition is missing)."""
    arcs = table["transitions"]
    if isinstance(arcs, list):
        arcs = {src: {c: dst for q, c, dst in arcs if q == src} for src, _, _ in arcs}
    states, q = [table["start"]], table["start"]
    for c in s:
        q = arcs.get(q, {}).get(c) if q is not None else None
        states.append(q)
    return states


def assert_agrees_with_naive(dfa: DFA, table: dict, output_of_state, max_len: int = 6) -> None:
    """Per-prefix outputs agree, and each naive state maps to exactly one DFA state."""
    alphabet = "".join(dfa.alphabet)
    image: dict[str | None, int] = {}
    for s in strings_up_to(alphabet, max_len):
        for naive, q in zip(naive_run(table, s), dfa.run(s), strict=True):
            assert int(dfa.outputs[q]) == output_of_state(naive), (s, naive, q)
            assert image.setdefault(naive, q) == q, f"{naive!r} maps to two DFA states"


def membership(table: dict):
    return lambda q: int(q in table["accepting"])


def test_dfa_table_agrees_with_a_naive_walk_on_every_short_string():
    dfa = dfa_from_table(DfaTableConfig(**ENDS_AB))
    assert_agrees_with_naive(dfa, ENDS_AB, membership(ENDS_AB))
    assert (dfa.num_states, dfa.dead) == (3, None)


def test_partial_table_sends_missing_transitions_to_a_dead_state():
    table = {
        "states": ["p", "q"],
        "start": "p",
        "accepting": ["p"],
        "transitions": [["p", "a", "q"], ["q", "b", "p"]],  # (ab)*
    }
    dfa = dfa_from_table(DfaTableConfig(**table))
    assert_agrees_with_naive(dfa, table, membership(table))
    assert dfa == compile_regex("(ab)*", "ab")
    assert (dfa.num_states, dfa.dead) == (3, 2)


def test_regex_table_list_table_and_att_file_give_identical_json(tmp_path):
    listed = dict(
        ENDS_AB,
        transitions=[
            [q, c, t] for q, row in ENDS_AB["transitions"].items() for c, t in row.items()
        ],
    )
    (tmp_path / "ends_ab.att").write_text(ENDS_AB_ATT)
    (tmp_path / "alph.txt").write_text(SYMBOLS)
    jsons = {
        compile_regex("(a|b)*ab", "ab").to_json(),
        dfa_from_table(DfaTableConfig(**ENDS_AB)).to_json(),
        dfa_from_table(DfaTableConfig(**listed)).to_json(),
        read_att(tmp_path / "ends_ab.att", tmp_path / "alph.txt").to_json(),
        read_att(tmp_path / "ends_ab.att").to_json(),
    }
    assert len(jsons) == 1


def test_att_labels_may_be_symbol_ids_when_a_table_is_given():
    numeric = ENDS_AB_ATT.replace("\ta\ta", "\t97\t97").replace("\tb\tb", "\t98\t98")
    assert parse_att(numeric, isymbols=SYMBOLS) == compile_regex("(a|b)*ab", "ab")


def test_att_symbol_table_fixes_the_alphabet_order():
    dfa = parse_att("0 0 b\n0\n", isymbols="<eps> 0\nb 1\na 2\n")
    assert dfa.alphabet == ("b", "a")
    assert dfa == compile_regex("b*", "ba")


@pytest.mark.parametrize(
    ("pattern", "alphabet"),
    [("(a|b)*ab", "ab"), ("(ab)*", "ab"), ("", "ab"), ("[^ab]", "ab"), ("a(b|c)*a", "abc")],
)
def test_att_round_trips_to_the_identical_dfa(pattern, alphabet):
    dfa = compile_regex(pattern, alphabet)
    assert parse_att(dfa.to_att()).to_json() == dfa.to_json()


def test_att_nfa_with_epsilon_arcs_is_determinised():
    # (a|b)*ab as an NFA: guess the final "ab"; an epsilon arc and weights thrown in.
    nfa = "0 0 a 0.5\n0 0 b\n0 4 <eps>\n4 1 a\n1 2 b b 1.25\n2 0\n"
    dfa = parse_att(nfa)
    assert dfa == compile_regex("(a|b)*ab", "ab")
    reference = {s: s.endswith("ab") for s in strings_up_to("ab", 7)}
    assert {s: dfa.accepts(s) for s in reference} == reference


def test_att_alphabet_may_be_wider_than_the_file():
    dfa = parse_att("0 1 a\n1\n", alphabet="abc")
    assert dfa == compile_regex("a", "abc")


@pytest.mark.parametrize(
    ("text", "isymbols", "message"),
    [
        ("0 1 a\n1 x a\n1\n", None, "f.att:2: state 'x' must be a non-negative integer"),
        ("0 1 a\n\n1 2 a b\n", None, "f.att:3: transducer arc 'a':'b'"),
        ("0 1 a b c d e f\n", None, "f.att:1: 8 fields"),
        ("0 1 ab\n", None, "f.att:1: label 'ab' must be a single character"),
        ("0 1 a\n1 heavy\n", None, "f.att:2: weight 'heavy' is not a number"),
        ("0 1 z\n", "<eps> 0\na 1\n", "f.att:1: label 'z' is not in the symbol table"),
        ("0 1 a\n", "<eps> 0\na one\n", "syms.txt:2: expected 'symbol id'"),
        ("0 1 a\n", "<eps> 0\nab 1\n", "syms.txt:2: symbol 'ab' must be a single character"),
        ("", None, "f.att: no arcs and no final states"),
    ],
)
def test_malformed_att_names_the_file_and_line(text, isymbols, message):
    with pytest.raises(SourceError) as err:
        parse_att(text, source="f.att", isymbols=isymbols, isymbols_source="syms.txt")
    assert message in str(err.value)


def test_read_att_of_a_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        read_att(tmp_path / "nope.att")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": "nowhere"}, "data.dfa.start: state 'nowhere' is not in states"),
        ({"accepting": ["saw_ab", "zzz"]}, "data.dfa.accepting: state 'zzz'"),
        ({"states": ["start", "saw_a", "saw_ab", "saw_a"]}, "repeats ['saw_a']"),
        (
            {"transitions": [["start", "a", "saw_a"], ["start", "a", "start"]]},
            "data.dfa.transitions[1]: state 'start' already has another target on 'a'",
        ),
        ({"transitions": {"start": {"a": "elsewhere"}}}, "transitions.start.a: state 'elsewhere'"),
        ({"transitions": {"start": {"ab": "start"}}}, "symbol 'ab' must be a single character"),
        ({"outputs": {"start": 0}}, "give exactly one of accepting"),
    ],
)
def test_malformed_tables_name_the_entry(change, message):
    with pytest.raises(SourceError) as err:
        dfa_from_table(DfaTableConfig(**(ENDS_AB | change)))
    assert message in str(err.value)


def test_table_symbols_outside_the_given_alphabet_are_refused():
    with pytest.raises(SourceError, match=r"symbols \['b'\] are not in data.alphabet 'a'"):
        dfa_from_table(DfaTableConfig(**ENDS_AB), alphabet="a")


# --- Moore machines -------------------------------------------------------------------------

STAY, UP, DOWN = "0", "1", "2"  # Delétang et al.'s cycle navigation actions


def cycle_table(size: int) -> dict:
    """Position on a `size`-cycle, output position mod 5: size 10 doubles every state."""
    step = {STAY: 0, UP: 1, DOWN: -1}
    return {
        "states": [f"p{i}" for i in range(size)],
        "start": "p0",
        "outputs": {f"p{i}": i % 5 for i in range(size)},
        "transitions": {
            f"p{i}": {a: f"p{(i + d) % size}" for a, d in step.items()} for i in range(size)
        },
    }


def test_cycle_navigation_minimises_to_five_states_that_track_the_position():
    table = cycle_table(10)
    dfa = dfa_from_table(DfaTableConfig(**table))
    assert (dfa.num_states, dfa.num_outputs) == (5, 5)
    assert sorted(dfa.outputs.tolist()) == [0, 1, 2, 3, 4]
    assert_agrees_with_naive(dfa, table, lambda q: int(q[1:]) % 5)
    for s in strings_up_to("012", 6):
        assert dfa.output_of(s) == (s.count(UP) - s.count(DOWN)) % 5
    assert dfa == dfa_from_table(DfaTableConfig(**cycle_table(5)))


def test_states_with_equal_outputs_but_different_futures_stay_apart():
    table = {
        "states": ["A", "B", "C"],
        "start": "A",
        "outputs": {"A": "even", "B": "even", "C": "odd"},
        "transitions": {"A": {"a": "B"}, "B": {"a": "C"}, "C": {"a": "C"}},
    }
    dfa = dfa_from_table(DfaTableConfig(**table))
    assert dfa.num_states == 3
    assert dfa.output_names == ("even", "odd")
    assert [dfa.output_of("a" * k) for k in range(4)] == [0, 0, 1, 1]


def modular_arithmetic_table() -> dict:
    """Delétang et al.'s modular arithmetic (simple): an expression over digits 0-4 and + - *
    (usual precedence), output its value mod 5; incomplete or malformed strings output
    "invalid". States are (sum of finished terms, current term, what comes next)."""
    states, transitions, outputs = [], {}, {}
    todo = [("digit", 0, 1)]  # expecting a digit: (sum, sign/factor of the term)
    while todo:
        state = todo.pop()
        name = "/".join(map(str, state))
        if name in outputs:
            continue
        states.append(name)
        kind, total, term = state
        outputs[name] = (total + term) % 5 if kind == "op" else "invalid"
        if kind == "digit":
            nexts = {str(d): ("op", total, term * d % 5) for d in range(5)}
        else:
            nexts = {
                "+": ("digit", (total + term) % 5, 1),
                "-": ("digit", (total + term) % 5, 4),
                "*": ("digit", total, term),
            }
        transitions[name] = {c: "/".join(map(str, t)) for c, t in nexts.items()}
        todo.extend(nexts.values())
    return {
        "states": states,
        "start": "digit/0/1",
        "outputs": outputs,
        "output_names": ["0", "1", "2", "3", "4", "invalid"],
        "dead_output": "invalid",
        "transitions": transitions,
    }


def test_modular_arithmetic_agrees_with_python_and_needs_more_states_than_the_cycle():
    dfa = dfa_from_table(DfaTableConfig(**modular_arithmetic_table()))
    # 25 (sum, term) pairs after a digit, 25 (sum, factor) waiting for a digit ('+' is a
    # factor of 1, '-' of 4, the start is "0+"), and the dead state for malformed strings.
    assert dfa.num_states == 25 + 25 + 1
    invalid = dfa.output_names.index("invalid")
    for s in strings_up_to("01234+-*", 4):
        valid = re.fullmatch("[0-4]([-+*][0-4])*", s) is not None
        assert dfa.output_of(s) == (eval(s) % 5 if valid else invalid), s


def test_moore_table_with_a_missing_transition_needs_a_dead_output():
    table = dict(cycle_table(5), transitions={"p0": {STAY: "p0"}})
    with pytest.raises(SourceError, match="'p0' has no transition on '1'.*set dead_output"):
        dfa_from_table(DfaTableConfig(**table), alphabet="012")
    dfa = dfa_from_table(DfaTableConfig(**table, dead_output=3), alphabet="012")
    assert [dfa.output_of(s) for s in ("", "0", "1", "10")] == [0, 0, 3, 3]


def test_moore_outputs_zero_one_without_names_are_plain_membership():
    table = dict(ENDS_AB, accepting=None, outputs={"start": 0, "saw_a": 0, "saw_ab": 1})
    assert dfa_from_table(DfaTableConfig(**table)) == compile_regex("(a|b)*ab", "ab")


# --- random DFAs ----------------------------------------------------------------------------


def future_signature(dfa: DFA, q: int, depth: int) -> tuple[int, ...]:
    """Outputs after every string of length <= depth read from q."""
    out = []
    for s in strings_up_to("".join(dfa.alphabet), depth):
        state = q
        for c in s:
            state = int(dfa.transitions[state, dfa.alphabet.index(c)])
        out.append(int(dfa.outputs[state]))
    return tuple(out)


@pytest.mark.parametrize(
    ("n", "alphabet", "fraction", "seed"),
    [(1, "ab", 0.5, 0), (2, "a", 0.5, 3), (6, "ab", 0.5, 0), (7, "abc", 0.3, 1), (9, "ab", 0.7, 2)],
)
def test_random_dfa_is_minimal_reachable_and_exactly_sized(n, alphabet, fraction, seed):
    dfa = random_dfa(n, alphabet, fraction, seed)
    assert dfa.num_states == n
    assert int(dfa.accepting.sum()) == int(np.floor(fraction * n + 0.5))
    signatures = {future_signature(dfa, q, n) for q in range(n)}
    assert len(signatures) == n  # no two states equivalent (strings up to n suffice)
    reached = {q for s in strings_up_to(alphabet, n) for q in dfa.run(s)}
    assert reached == set(range(n))
    assert random_dfa(n, alphabet, fraction, seed).to_json() == dfa.to_json()


def test_random_dfa_seeds_give_different_machines():
    assert random_dfa(8, "ab", 0.5, 0) != random_dfa(8, "ab", 0.5, 1)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.04])
def test_random_dfa_with_one_output_class_cannot_be_minimal(fraction):
    with pytest.raises(SourceError, match="all states are equivalent"):
        random_dfa(5, "ab", fraction, 0)


# --- the config door ------------------------------------------------------------------------


def test_build_dfa_builds_every_source(tmp_path):
    (tmp_path / "l.att").write_text(ENDS_AB_ATT)
    expected = compile_regex("(a|b)*ab", "ab")
    assert build_dfa(DataConfig(regex="(a|b)*ab", alphabet="ab")) == expected
    assert build_dfa(DataConfig(dfa=ENDS_AB)) == expected
    assert build_dfa(DataConfig(att={"path": str(tmp_path / "l.att")})) == expected
    data = DataConfig(random_dfa={"num_states": 4, "seed": 5}, alphabet="ab")
    assert build_dfa(data) == random_dfa(4, "ab", 0.5, 5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alphabet": "ab"}, "exactly one language source .* \\(got none\\)"),
        ({"regex": "a", "dfa": ENDS_AB, "alphabet": "ab"}, "\\(got regex, dfa\\)"),
        ({"regex": "a"}, "alphabet is required with regex"),
        ({"random_dfa": {"num_states": 3}}, "alphabet is required with random_dfa"),
    ],
)
def test_data_config_takes_exactly_one_source(fields, message):
    with pytest.raises(ValidationError, match=message):
        DataConfig(**fields)


def test_unset_sources_stay_out_of_the_dump():
    assert "dfa" not in DataConfig(regex="a", alphabet="ab").model_dump()
    dumped = DataConfig(dfa=ENDS_AB).model_dump(mode="json")
    assert "regex" not in dumped and "alphabet" not in dumped
    assert DataConfig.model_validate(dumped) == DataConfig(dfa=ENDS_AB)


def test_regex_a_config_hash_is_unchanged_by_the_new_sources():
    from fsmrun.base.hashing import config_hash
    from fsmrun.experiments import load_experiment

    # computed before DataConfig had any source but regex
    expected = "8beeb3967532581eeecde03f7ad2497443ec083359e362c40d6137ec774daf80"
    assert config_hash(load_experiment("regex_a")) == expected
