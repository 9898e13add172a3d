"""Exact comparison of two machines over one alphabet through their product automaton:
equivalence, the shortest distinguishing string, and the fraction of all strings of each
length on which they agree, counted on the product (Python ints, no sampling). No torch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from fsmrun.lang.fsm import DFA

__all__ = ["Comparison", "agreement_by_length", "compare", "shortest_difference"]


@dataclass(frozen=True)
class Comparison:
    """How machine `a` (the target) and machine `b` (the extracted one) relate.

    `difference` is the shortest string on which their outputs differ (the first in alphabet
    order among the shortest), None when they are equivalent. `agreement[n]` is the exact
    fraction of the |alphabet|^n strings of length n on which their outputs agree, n = 0..max.
    """

    equivalent: bool
    difference: str | None
    output_a: int | None  # output of `a` on `difference`
    output_b: int | None
    agreement: list[Fraction]


def _check_same_alphabet(a: DFA, b: DFA) -> None:
    if a.alphabet != b.alphabet:
        raise ValueError(f"machines over different alphabets: {a.alphabet} and {b.alphabet}")


def shortest_difference(a: DFA, b: DFA) -> str | None:
    """The shortest string whose outputs differ in `a` and `b` (None: equivalent).

    Breadth-first search on the reachable pairs of the product from (start_a, start_b),
    symbols tried in alphabet order, so the answer is also the first such string in
    length-then-alphabet order. Each pair is visited once: O(|Q_a| * |Q_b| * |alphabet|).
    """
    _check_same_alphabet(a, b)
    ta, tb = a.transitions.tolist(), b.transitions.tolist()
    oa, ob = a.outputs.tolist(), b.outputs.tolist()
    start = (a.start, b.start)
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        pair = queue.popleft()
        if oa[pair[0]] != ob[pair[1]]:
            symbols = []
            step = parent[pair]
            while step is not None:
                pair, symbol = step
                symbols.append(a.alphabet[symbol])
                step = parent[pair]
            return "".join(reversed(symbols))
        for i in range(len(a.alphabet)):
            nxt = (ta[pair[0]][i], tb[pair[1]][i])
            if nxt not in parent:
                parent[nxt] = (pair, i)
                queue.append(nxt)
    return None


def agreement_by_length(a: DFA, b: DFA, max_length: int) -> list[Fraction]:
    """`result[n]`: exact fraction of strings of length n (0..max_length) on which the outputs
    of `a` and `b` agree.

    Forward path counting on the product: `count[pair]` is the number of strings of length n
    leading from the start pair to `pair` (Python ints: |alphabet|^n overflows int64 fast);
    the strings of length n that agree are those ending in a pair with equal outputs.
    """
    _check_same_alphabet(a, b)
    if max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    ta, tb = a.transitions.tolist(), b.transitions.tolist()
    oa, ob = a.outputs.tolist(), b.outputs.tolist()
    symbols = range(len(a.alphabet))
    count: dict[tuple[int, int], int] = {(a.start, b.start): 1}
    result = []
    for n in range(max_length + 1):
        agree = sum(c for (p, q), c in count.items() if oa[p] == ob[q])
        result.append(Fraction(agree, len(a.alphabet) ** n))
        nxt: dict[tuple[int, int], int] = {}
        for (p, q), c in count.items():
            for i in symbols:
                key = (ta[p][i], tb[q][i])
                nxt[key] = nxt.get(key, 0) + c
        count = nxt
    return result


def compare(target: DFA, extracted: DFA, max_length: int) -> Comparison:
    """Equivalence, shortest distinguishing string and agreement by length (0..max_length)."""
    difference = shortest_difference(target, extracted)
    if difference is None:
        return Comparison(True, None, None, None, [Fraction(1)] * (max_length + 1))
    return Comparison(
        equivalent=False,
        difference=difference,
        output_a=target.output_of(difference),
        output_b=extracted.output_of(difference),
        agreement=agreement_by_length(target, extracted, max_length),
    )
