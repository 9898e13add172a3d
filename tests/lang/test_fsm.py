"""Tests for the regex -> minimal DFA compiler, with Python's `re.fullmatch` as the oracle."""

from __future__ import annotations

import itertools
import json
import re
from collections import deque

import numpy as np
import pytest

from fsmrun.lang import fsm, minimize
from fsmrun.lang.fsm import DFA, RegexError, StateLimitError, compile_regex

# (pattern, alphabet, nested): `nested` patterns make `re` backtrack exponentially, so their
# random long strings are skipped (every string up to length 8 is still checked).
CASES = [
    ("a*", "ab", False),
    ("(ab)*", "ab", False),
    ("b*(ab*ab*)*", "ab", True),
    ("(a|b)*abb", "ab", False),
    ("((a*)*b)*", "ab", True),
    ("(a*b*)*", "ab", True),
    ("(a|)(b|)", "ab", False),
    ("a|", "ab", False),
    ("|b", "ab", False),
    ("", "ab", False),
    ("(ab)?c?", "abc", False),
    ("(?:ab)+c", "abc", False),
    ("a{3}", "ab", False),
    ("a{2,}b", "ab", False),
    ("a{,2}b{1,3}", "ab", False),
    ("(ab|c){2,3}", "abc", False),
    ("[ab]*c[bc]?", "abc", False),
    ("[a-c]+d", "abcd", False),
    ("[^a]*a[^a]*", "abc", False),
    ("[^ab]{2}", "abc", False),
    (".*a.{2}", "abc", False),
    ("a*?b+?c??", "abc", False),
    ("(ab){1,2}?c{2,}?", "abc", False),
    (r"\.a\*|\(+", ".*(a", False),
    (r"[\]\-]+a", "]-a", False),
    ("((a|b)(c|a))*", "abc", False),
    ("(a(b(c)*)*)*", "abc", True),
    ("(a|b)*a(a|b){3}", "ab", False),
    ("(0|1(01*0)*1)*", "01", True),
    ("x(y|z)*x|y+", "xyz", False),
    ("(a+|b+)*c", "abc", True),
    ("[a-b][b-c]?[^c]*", "abc", False),
    ("(?:a|b|)*c{0}", "abc", True),
    ("(ab|a)(bc|c)", "abc", False),
    ("a{0,0}|b{1}", "ab", False),
    ("(((a)))|((b)c)", "abc", False),
    ("(a?){3}a{3}", "ab", False),
]
IDS = [f"{i}:{pattern}" for i, (pattern, _, _) in enumerate(CASES)]
FLAT_CASES = [case for case in CASES if not case[2]]


def run_all(dfa: DFA, ids_nxl: np.ndarray) -> np.ndarray:
    """Acceptance of many equal-length strings at once (bool [N])."""
    states_n = np.full(len(ids_nxl), dfa.start)
    for column in ids_nxl.T:
        states_n = dfa.transitions[states_n, column]
    return dfa.accepting[states_n]


def strings_of_length(alphabet: str, n: int) -> tuple[list[str], np.ndarray]:
    tuples = list(itertools.product(range(len(alphabet)), repeat=n))
    ids_nxl = np.array(tuples, dtype=np.int64).reshape(len(tuples), n)
    return ["".join(alphabet[i] for i in t) for t in tuples], ids_nxl


def bfs_order(dfa: DFA) -> list[int]:
    order, seen, queue = [], {dfa.start}, deque([dfa.start])
    while queue:
        q = queue.popleft()
        order.append(q)
        for t in dfa.transitions[q].tolist():
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return order


def equivalent_pairs(dfa: DFA) -> list[tuple[int, int]]:
    """Pairs of states no string distinguishes (table filling; empty for a minimal DFA)."""
    n, trans = dfa.num_states, dfa.transitions.tolist()
    marked = {(p, q) for p in range(n) for q in range(p) if dfa.accepting[p] != dfa.accepting[q]}
    changed = True
    while changed:
        changed = False
        for p in range(n):
            for q in range(p):
                if (p, q) in marked:
                    continue
                for a, b in zip(trans[p], trans[q], strict=True):
                    if a != b and (max(a, b), min(a, b)) in marked:
                        marked.add((p, q))
                        changed = True
                        break
    return [(p, q) for p in range(n) for q in range(p) if (p, q) not in marked]


@pytest.mark.parametrize(("pattern", "alphabet", "nested"), CASES, ids=IDS)
def test_compiled_dfa_agrees_with_re_on_all_short_strings(pattern, alphabet, nested):
    dfa = compile_regex(pattern, alphabet)
    oracle = re.compile(pattern)
    for n in range(9):
        strings, ids_nxl = strings_of_length(alphabet, n)
        expected = [oracle.fullmatch(s) is not None for s in strings]
        got = run_all(dfa, ids_nxl)
        mismatches = [s for s, e, g in zip(strings, expected, got, strict=True) if e != g]
        assert not mismatches, f"{pattern!r} disagrees with re on {mismatches[:5]}"
        assert dfa.count_accepted(n) == sum(expected)


@pytest.mark.parametrize(("pattern", "alphabet", "nested"), FLAT_CASES)
def test_compiled_dfa_agrees_with_re_on_random_long_strings(pattern, alphabet, nested):
    dfa = compile_regex(pattern, alphabet)
    oracle = re.compile(pattern)
    rng = np.random.default_rng(len(pattern))
    # Half uniform over the alphabet, half over its first two symbols only, so that patterns
    # like (ab|a)* also meet long accepted strings.
    for i in range(200):
        n = int(rng.integers(9, 40))
        if i % 2:
            s = "".join(rng.choice(list(alphabet), size=n))
        else:
            s = "".join(rng.choice(list(alphabet[:2]), size=n))
        assert dfa.accepts(s) == (oracle.fullmatch(s) is not None), (pattern, s)


@pytest.mark.parametrize(("pattern", "alphabet", "nested"), CASES, ids=IDS)
def test_compiled_dfa_is_minimal_reachable_and_canonically_numbered(pattern, alphabet, nested):
    dfa = compile_regex(pattern, alphabet)
    assert equivalent_pairs(dfa) == []
    assert bfs_order(dfa) == list(range(dfa.num_states))  # all reachable, in BFS order
    assert dfa.start == 0
    assert DFA.from_json(dfa.to_json()).to_json() == dfa.to_json()


def test_hopcroft_and_moore_minimisation_agree(monkeypatch):
    moore = [compile_regex(p, a).to_json() for p, a, _ in CASES]
    monkeypatch.setattr(minimize, "MOORE_ROUNDS", 0)  # straight to Hopcroft
    hopcroft = [compile_regex(p, a).to_json() for p, a, _ in CASES]
    assert hopcroft == moore


def test_deep_chain_uses_hopcroft_and_stays_exact():
    dfa = compile_regex("(ab){30}a{0,40}", "ab")  # distinguishing words longer than 48
    assert dfa.num_states == 60 + 41 + 1
    assert dfa.accepts("ab" * 30 + "a" * 40)
    assert not dfa.accepts("ab" * 30 + "a" * 41)
    assert not dfa.accepts("ab" * 29 + "a")
    assert equivalent_pairs(dfa) == []


@pytest.mark.parametrize(
    ("first", "second", "alphabet"),
    [
        ("(a|b)*", "(a*b*)*", "ab"),
        ("(a|b)*", ".*", "ab"),
        ("[ab]*", "(?:b|a)*?", "ab"),
        ("a+", "aa*", "ab"),
        ("(ab)*a", "a(ba)*", "ab"),
        ("a{2,3}", "aa|aaa", "ab"),
        ("a?", "a??", "ab"),
        ("[^a]", "[bc]", "abc"),
        ("", "()|a{0}", "ab"),
        ("[a-a]", "a", "ab"),
    ],
)
def test_equivalent_regexes_give_identical_json(first, second, alphabet):
    assert compile_regex(first, alphabet).to_json() == compile_regex(second, alphabet).to_json()


@pytest.mark.parametrize(
    ("pattern", "alphabet", "num_states", "dead"),
    [
        ("b*(ab*ab*)*", "ab", 2, None),  # parity of a's
        ("(ab)*", "ab", 3, 2),
        ("", "ab", 2, 1),
        ("[^ab]", "ab", 1, 0),  # the empty language: just the dead state
        (".*", "ab", 1, None),
        ("a{2,4}", "ab", 6, 2),
        ("(a|b)*a(a|b){2}", "ab", 8, None),
        ("(a|b)*a(a|b){8}", "ab", 512, None),
        ("(0|1(01*0)*1)*", "01", 3, None),  # binary multiples of 3
    ],
)
def test_known_minimal_state_counts(pattern, alphabet, num_states, dead):
    dfa = compile_regex(pattern, alphabet)
    assert (dfa.num_states, dfa.dead) == (num_states, dead)


def test_ab_star_table_is_pinned():
    dfa = compile_regex("(ab)*", "ab")
    assert dfa.transitions.tolist() == [[1, 2], [2, 0], [2, 2]]
    assert dfa.accepting.tolist() == [True, False, False]
    assert dfa.run("aba") == [0, 1, 0, 1]


def test_numbering_follows_alphabet_order():
    assert compile_regex("a*", "ab").transitions.tolist() == [[0, 1], [1, 1]]
    assert compile_regex("a*", "ba").transitions.tolist() == [[1, 0], [1, 1]]


def test_alphabet_may_be_a_sequence_of_symbols():
    assert compile_regex("a(b|c)*", ["a", "b", "c"]) == compile_regex("a(b|c)*", "abc")


def test_json_round_trip_keeps_every_field():
    dfa = compile_regex("(a|b)*abb", "ab")
    again = DFA.from_json(dfa.to_json())
    assert again == dfa
    assert again.to_json() == dfa.to_json()
    assert (again.start, again.dead, again.num_states) == (0, None, 4)
    assert np.array_equal(again.transitions, dfa.transitions)


def test_to_dot_lists_live_states_and_the_start_arrow():
    dot = compile_regex("(ab)*", "ab").to_dot()
    assert dot.startswith("digraph DFA {")
    assert "  0 [shape=doublecircle" in dot
    assert "  1 [shape=circle" in dot
    assert "  2 [" not in dot  # the dead state is left out
    assert "__start -> 0;" in dot
    assert '0 -> 1 [label="a"];' in dot


@pytest.mark.parametrize(
    ("pattern", "alphabet", "message", "position"),
    [
        ("(ab", "ab", "unbalanced parenthesis", 3),
        ("ab)", "ab", "unbalanced parenthesis", 2),
        ("*a", "ab", "nothing to repeat", 0),
        ("a|+", "ab", "nothing to repeat", 2),
        ("a**", "ab", "multiple repeat", 2),
        ("a{2}{3}", "ab", "multiple repeat", 4),
        ("a*??", "ab", "multiple repeat", 3),
        ("[ab", "ab", "unterminated character class", 0),
        ("a{3,1}", "ab", "min repeat 3 greater than max repeat 1", 1),
        ("a{x}", "ab", "malformed repetition (expected {m}, {m,}, {,n} or {m,n})", 1),
        ("a{,}", "ab", "malformed repetition (expected {m}, {m,}, {,n} or {m,n})", 1),
        ("a{2", "ab", "unterminated repetition", 1),
        ("ab\\", "ab", "bad escape (end of pattern)", 2),
        ("a\\d", "ab", "unsupported escape \\d", 1),
        ("ac", "ab", "symbol 'c' is not in the alphabet 'ab'", 1),
        ("[ax]", "ab", "symbol 'x' is not in the alphabet 'ab'", 2),
        ("b[c-a]", "abc", "bad character range c-a", 2),
        ("(?=a)", "ab", "unsupported group (only ( ) and (?: ) are allowed)", 0),
        (
            "a{2000000}",
            "ab",
            "repetition too large (the pattern would expand to more than 1,000,000 NFA states)",
            1,
        ),
    ],
)
def test_malformed_patterns_raise_with_position_and_caret(pattern, alphabet, message, position):
    with pytest.raises(RegexError) as info:
        compile_regex(pattern, alphabet)
    text = str(info.value)
    assert text == f"{message} at position {position}\n  {pattern}\n  {' ' * position}^"


def test_unbalanced_parenthesis_message_matches_the_documented_example():
    with pytest.raises(
        RegexError, match=r"^unbalanced parenthesis at position 3\n  \(ab\n     \^$"
    ):
        compile_regex("(ab", "ab")


def test_regex_error_is_a_value_error():
    assert issubclass(RegexError, ValueError)
    assert issubclass(StateLimitError, ValueError)


@pytest.mark.parametrize("alphabet", ["", "aa", ["a", "bc"]])
def test_bad_alphabets_are_rejected(alphabet):
    with pytest.raises(ValueError, match="alphabet"):
        compile_regex("a", alphabet)


def test_state_cap_stops_subset_construction_early():
    # The minimal DFA has 2**21 states; the default cap of 10,000 stops it at 80,000.
    with pytest.raises(StateLimitError, match=r"cap of 10,000.*data\.max_states.*--max-states"):
        compile_regex("(a|b)*a(a|b){20}", "ab")


def test_state_cap_applies_to_the_minimal_dfa():
    assert compile_regex("(ab)*", "ab", max_states=3).num_states == 3
    with pytest.raises(StateLimitError, match=r"3 states, over the cap of 2; .*data\.max_states"):
        compile_regex("(ab)*", "ab", max_states=2)


def test_subset_dfa_far_above_the_minimal_one_is_still_compiled_under_the_bound():
    # Subset construction meets 512 sets here, the minimal DFA is the single state of .*
    dfa = compile_regex("(a|b)*a(a|b){8}|(a|b)*", "ab", max_states=100)
    assert dfa.num_states == 1


# --- Moore outputs --------------------------------------------------------------------------

# Cycle navigation on a 5-cycle, actions stay/+1/-1, written with 10 states (i and i + 5 alike).
CYCLE10 = np.array([[i, (i + 1) % 10, (i - 1) % 10] for i in range(10)])


def test_membership_json_is_pinned_and_has_no_output_fields():
    dfa = compile_regex("(ab)*", "ab")
    assert dfa.to_json() == (
        '{"accepting":[true,false,false],"alphabet":["a","b"],"dead":2,'
        '"format":"fsmrun-dfa-1","num_states":3,"start":0,"transitions":[[1,2],[2,0],[2,2]]}'
    )
    assert dfa.is_membership and dfa.output_names == ("reject", "accept")
    assert dfa.outputs.tolist() == [1, 0, 0]
    assert [dfa.output_of(s) for s in ("", "a", "ab")] == [1, 0, 1]


def test_moore_minimisation_merges_equal_outputs_and_futures_only():
    dfa = fsm.minimal_dfa("012", CYCLE10, np.arange(10) % 5)
    assert (dfa.num_states, dfa.num_outputs, dfa.is_membership) == (5, 5, False)
    assert equivalent_pairs(dfa) == []
    for n in range(6):
        for s in map("".join, itertools.product("012", repeat=n)):
            assert dfa.output_of(s) == (s.count("1") - s.count("2")) % 5
    # one state's output changed: i and i + 5 now differ in their distance to it
    outputs = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 5])
    assert fsm.minimal_dfa("012", CYCLE10, outputs).num_states == 10


def test_moore_json_round_trips_with_outputs_and_names():
    dfa = fsm.minimal_dfa(
        "012", CYCLE10, np.arange(10) % 5, output_names=["p0", "p1", "p2", "p3", "p4"]
    )
    doc = json.loads(dfa.to_json())
    assert doc["outputs"] == [0, 1, 4, 2, 3]
    assert (doc["num_outputs"], doc["output_names"]) == (5, ["p0", "p1", "p2", "p3", "p4"])
    assert doc["accepting"] == [False, True, True, True, True]  # output != 0
    again = DFA.from_json(dfa.to_json())
    assert again.to_json() == dfa.to_json()
    assert again.output_names == dfa.output_names


def test_moore_dot_labels_states_with_their_output():
    dot = fsm.minimal_dfa("012", CYCLE10, np.arange(10) % 5).to_dot()
    assert '  2 [shape=circle, label="2 / 4"];' in dot


def test_unused_output_classes_count_when_named():
    dfa = DFA("a", [[0]], start=0, outputs=[1], output_names=["x", "y", "z"])
    assert (dfa.num_outputs, dfa.output_of("aa")) == (3, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": [0, 3], "num_outputs": 2}, "outputs must lie in 0..1"),
        ({"outputs": [0, 1], "output_names": ["x", "x"]}, "repeat"),
        ({"accepting": [True, False], "outputs": [0, 1]}, "exactly one of accepting"),
    ],
)
def test_bad_outputs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DFA("a", [[1], [1]], **kwargs)


def test_to_att_refuses_moore_machines():
    with pytest.raises(ValueError, match="membership only"):
        fsm.minimal_dfa("012", CYCLE10, np.arange(10) % 5).to_att()


def test_minimal_dfa_drops_unreachable_states_and_renumbers_from_the_start():
    # state 2 is unreachable; the start is state 1; (a|b)*a over ab
    table = np.array([[0, 1], [0, 1], [2, 2]])
    dfa = fsm.minimal_dfa("ab", table, np.array([True, False, True]), start=1)
    assert dfa == compile_regex("(a|b)*a", "ab")
