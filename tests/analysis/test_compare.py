"""Exact comparison on the product automaton: hand-worked distinguishing strings and counts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fsmrun.analysis.compare import agreement_by_length, compare, shortest_difference
from fsmrun.lang.fsm import compile_regex, minimal_dfa

PARITY = compile_regex("b*(ab*ab*)*", "ab")  # an even number of a's
EVEN_LENGTH = compile_regex("((a|b)(a|b))*", "ab")


def test_parity_and_even_length_first_differ_on_b_and_agree_on_half_of_each_length():
    # "" and "a" get the same answer from both; "b" has no a (even) but odd length.
    assert shortest_difference(PARITY, EVEN_LENGTH) == "b"
    # Length n >= 1: they agree iff #a has the parity of n: 2^(n-1) of the 2^n strings.
    assert agreement_by_length(PARITY, EVEN_LENGTH, 5) == [Fraction(1)] + [Fraction(1, 2)] * 5


def test_a_star_against_the_empty_language_counts_exactly_at_length_100():
    a_star = compile_regex("a*", "ab")
    nothing = minimal_dfa("ab", np.zeros((1, 2), dtype=np.int64), np.array([False]))
    result = compare(a_star, nothing, 100)
    assert not result.equivalent
    assert result.difference == ""  # a* accepts the empty string
    assert (result.output_a, result.output_b) == (1, 0)
    # Only a^n is accepted by a*: they agree on the other 2^n - 1 strings of length n.
    assert result.agreement[:4] == [Fraction(0), Fraction(1, 2), Fraction(3, 4), Fraction(7, 8)]
    assert result.agreement[100] == Fraction(2**100 - 1, 2**100)


def test_a_redundant_table_of_the_same_language_is_equivalent():
    # Three states, all accepting, cycling on a: the language (a|b)*.
    table = np.array([[1, 0], [2, 1], [0, 2]])
    redundant = minimal_dfa("ab", table, np.array([True, True, True]))
    result = compare(compile_regex("(a|b)*", "ab"), redundant, 7)
    assert result.equivalent and result.difference is None
    assert result.agreement == [Fraction(1)] * 8


def test_the_shortest_difference_is_the_first_in_alphabet_order():
    # Strings ending in "ab" against strings ending in "bb": "ab" and "bb" are the length-2
    # differences; BFS in alphabet order finds "ab" first.
    assert (
        shortest_difference(compile_regex("(a|b)*ab", "ab"), compile_regex("(a|b)*bb", "ab"))
        == "ab"
    )
