"""The reference languages of spec/languages.md: each regex against an independent definition."""

from __future__ import annotations

import itertools

import pytest

from fsmrun.lang.fsm import compile_regex


def tomita3(s: str) -> bool:
    """No maximal odd run of 1s immediately followed by a maximal odd run of 0s."""
    runs = [(symbol, len(list(group))) for symbol, group in itertools.groupby(s)]
    return not any(
        a == "1" and m % 2 and b == "0" and n % 2 for (a, m), (b, n) in itertools.pairwise(runs)
    )


def tomita7(s: str) -> bool:
    """0*1*0*1*: at most four runs once a leading 0 is prepended."""
    return len(list(itertools.groupby("0" + s))) <= 4


# name -> (alphabet, regex from the spec, independent definition, minimal states, dead state?)
LANGUAGES = {
    "tomita1": ("01", "1*", lambda s: "0" not in s, 2, True),
    "tomita2": ("01", "(10)*", lambda s: s == "10" * (len(s) // 2), 3, True),
    "tomita3": ("01", "0*((11)+0*|1(11)*(00)+)*1?", tomita3, 5, True),
    "tomita4": ("01", "(1|01|001)*(0|00)?", lambda s: "000" not in s, 4, True),
    "tomita5": (
        "01",
        "(00|11|(01|10)(00|11)*(01|10))*",
        lambda s: s.count("0") % 2 == 0 and s.count("1") % 2 == 0,
        4,
        False,
    ),
    "tomita6": (
        "01",
        "(01|(1|00)(10)*(0|11))*",
        lambda s: (s.count("0") - s.count("1")) % 3 == 0,
        3,
        False,
    ),
    "tomita7": ("01", "0*1*0*1*", tomita7, 5, True),
    "parity": ("ab", "b*(ab*ab*)*", lambda s: s.count("a") % 2 == 0, 2, False),
    "even_pairs": ("ab", "|a|b|a(a|b)*a|b(a|b)*b", lambda s: s == "" or s[0] == s[-1], 5, False),
}


def all_strings(alphabet: str, max_length: int):
    for n in range(max_length + 1):
        for symbols in itertools.product(alphabet, repeat=n):
            yield "".join(symbols)


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_reference_regex_matches_its_definition_up_to_length_12(name):
    alphabet, pattern, member, _, _ = LANGUAGES[name]
    dfa = compile_regex(pattern, alphabet)
    wrong = [s for s in all_strings(alphabet, 12) if dfa.accepts(s) != member(s)]
    assert not wrong, f"{name}: regex and definition disagree on {wrong[:5]}"


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_reference_language_minimal_state_count(name):
    # Hand-derived: tomita1 {start, dead}; tomita2 {start, after 1, dead}; tomita3 {free,
    # odd 1-run, odd 0-run after odd 1-run, even 0-run after odd 1-run, dead}; tomita4 {0, 1, 2
    # trailing 0s, dead}; tomita5 the 4 parity pairs; tomita6 the 3 residues; tomita7 {in each
    # of the 4 blocks, dead}; parity 2; even_pairs {start, first a/b x last equal or not}.
    alphabet, pattern, _, num_states, has_dead = LANGUAGES[name]
    dfa = compile_regex(pattern, alphabet)
    assert dfa.num_states == num_states
    assert (dfa.dead is not None) == has_dead
