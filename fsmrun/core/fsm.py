"""Regular expressions to minimal complete DFAs over an explicit alphabet.

`DFA` is the immutable automaton every other module reads; `compile_regex` builds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from fsmrun.core._regex_parse import Parser, RegexSyntaxError, ThompsonNFA

__all__ = ["DFA", "DFA_JSON_FORMAT", "RegexError", "StateLimitError", "compile_regex"]

DFA_JSON_FORMAT = "fsmrun-dfa-1"

# The subset construction stops once it holds this many times `max_states` states. The cap is
# about the *minimal* DFA, which is checked after minimisation; the subset DFA is usually within
# a small factor of it, so a generous multiple keeps false alarms rare while a regex far over
# the cap still fails within a fraction of a second.
SUBSET_LIMIT_FACTOR = 8
# Vectorised Moore rounds before minimisation switches to Hopcroft (see _minimise).
MOORE_ROUNDS = 48


class RegexError(ValueError):
    """A malformed pattern or a symbol outside the alphabet (message has a caret line)."""


class StateLimitError(ValueError):
    """The DFA of a regex would exceed the state cap (`max_states`, DataConfig.max_states)."""


class DFA:
    """A complete deterministic automaton, states numbered canonically (BFS from start).

    `transitions[q, i]` is the state reached from `q` on `alphabet[i]`; `accepting[q]` says
    whether `q` accepts; `dead` is the index of the non-accepting sink, or None.
    """

    def __init__(
        self,
        alphabet: Sequence[str],
        transitions: np.ndarray,
        accepting: np.ndarray,
        start: int = 0,
    ) -> None:
        self.alphabet: tuple[str, ...] = tuple(alphabet)
        transitions = np.array(transitions, dtype=np.int64)
        accepting = np.array(accepting, dtype=bool)
        num_states = transitions.shape[0]
        if transitions.shape != (num_states, len(self.alphabet)) or accepting.shape != (
            num_states,
        ):
            raise ValueError(
                "transitions must be [num_states, len(alphabet)], accepting [num_states]"
            )
        if num_states and (transitions.min() < 0 or transitions.max() >= num_states):
            raise ValueError("transition targets must be state indices")
        transitions.setflags(write=False)
        accepting.setflags(write=False)
        self.transitions = transitions
        self.accepting = accepting
        self.start = int(start)
        self._symbol_index = {s: i for i, s in enumerate(self.alphabet)}
        sinks = np.flatnonzero(
            ~accepting & (transitions == np.arange(num_states)[:, None]).all(axis=1)
        )
        self.dead: int | None = int(sinks[0]) if len(sinks) else None

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    def symbol_ids(self, s: str) -> list[int]:
        """Alphabet indices of the characters of `s`; RegexError for a foreign symbol."""
        try:
            return [self._symbol_index[c] for c in s]
        except KeyError as err:
            raise RegexError(
                f"symbol {err.args[0]!r} is not in the alphabet {self.alphabet}"
            ) from None

    def run(self, s: str) -> list[int]:
        """States after each prefix of `s`, the start state first (len(s) + 1 entries)."""
        states = [self.start]
        q = self.start
        for i in self.symbol_ids(s):
            q = int(self.transitions[q, i])
            states.append(q)
        return states

    def accepts(self, s: str) -> bool:
        return bool(self.accepting[self.run(s)[-1]])

    def count_accepted(self, n: int) -> int:
        """Exact number of accepted strings of length n (Python ints, no overflow)."""
        return int(self.count_table(n)[0][self.start])

    def count_table(self, n: int) -> list[list[int]]:
        """`table[k][q]` = number of strings of length n - k leading from q to acceptance.

        Row k is what is left to count after k of n symbols have been read (row 0: whole
        strings of length n from q; row n: 1 where q accepts), k = 0..n.
        """
        table = [[int(a) for a in self.accepting]]
        for _ in range(n):
            prev = table[-1]
            table.append([sum(prev[t] for t in row) for row in self.transitions.tolist()])
        return table[::-1]

    @cached_property
    def live(self) -> np.ndarray:
        """`live[q]`: some accepting state is reachable from q (bool [num_states])."""
        live = self.accepting.copy()
        while True:
            grown = live | live[self.transitions].any(axis=1)
            if (grown == live).all():
                return grown
            live = grown

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal DFAs give identical bytes."""
        doc = {
            "format": DFA_JSON_FORMAT,
            "alphabet": list(self.alphabet),
            "start": self.start,
            "accepting": [bool(a) for a in self.accepting],
            "transitions": self.transitions.tolist(),
            "dead": self.dead,
            "num_states": self.num_states,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DFA:
        doc = json.loads(text)
        if doc.get("format") != DFA_JSON_FORMAT:
            raise ValueError(f"not an fsmrun DFA (format {doc.get('format')!r})")
        return cls(
            doc["alphabet"], np.array(doc["transitions"]), np.array(doc["accepting"]), doc["start"]
        )

    def to_dot(self) -> str:
        """Graphviz source; the dead state and edges into it are left out for readability."""
        lines = ["digraph DFA {", "  rankdir=LR;", '  __start [shape=point, label=""];']
        for q in range(self.num_states):
            if q == self.dead:
                continue
            shape = "doublecircle" if self.accepting[q] else "circle"
            lines.append(f'  {q} [shape={shape}, label="{q}"];')
        lines.append(f"  __start -> {self.start};")
        for q in range(self.num_states):
            if q == self.dead:
                continue
            by_target: dict[int, list[str]] = {}
            for i, sym in enumerate(self.alphabet):
                t = int(self.transitions[q, i])
                if t != self.dead:
                    by_target.setdefault(t, []).append(sym)
            for t, syms in by_target.items():
                label = ",".join(syms).replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'  {q} -> {t} [label="{label}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DFA) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        symbols = "".join(self.alphabet)
        return f"DFA(alphabet={symbols!r}, num_states={self.num_states}, dead={self.dead})"


def compile_regex(pattern: str, alphabet: str | Sequence[str], *, max_states: int = 10_000) -> DFA:
    """Compile `pattern` (full-match semantics) to the minimal complete DFA over `alphabet`.

    Pipeline: parse -> Thompson NFA -> subset construction over symbol classes (NFA state sets
    as Python-int bitsets) -> partition refinement on a numpy table (Moore, then Hopcroft for
    deep automata) -> canonical BFS numbering. Raises RegexError for a malformed pattern or a
    symbol outside the alphabet (also inside classes; range ends may lie outside it) and
    StateLimitError when the minimal DFA would have more than `max_states` states. To fail
    fast, subset construction stops at SUBSET_LIMIT_FACTOR * max_states states, so a regex
    whose subset DFA is over 8x its minimal DFA can also be refused near the cap.
    """
    symbols = _check_alphabet(alphabet)
    if max_states < 1:
        raise ValueError(f"max_states must be at least 1, got {max_states}")
    try:
        ast = Parser(pattern, symbols).parse()
        nfa = ThompsonNFA()
        start, final = nfa.build(ast)
    except RegexSyntaxError as err:
        raise RegexError(_caret_message(pattern, err.message, err.position)) from None
    except RecursionError:
        raise RegexError(f"pattern nested too deeply: {pattern[:60]!r}") from None
    table_nxk, accepting_n, class_of_symbol = _subset_construction(
        nfa, start, final, len(symbols), SUBSET_LIMIT_FACTOR * max_states
    )
    table_mxk, accepting_m, start_m = _minimise(table_nxk, accepting_n)
    if len(accepting_m) > max_states:
        raise StateLimitError(
            f"the minimal DFA has {len(accepting_m):,} states, over the cap of "
            f"max_states={max_states:,}; raise DataConfig.max_states (or pass max_states= "
            f"to compile_regex) to allow it"
        )
    table_mxa = table_mxk[:, class_of_symbol]
    transitions, accepting = _canonical_order(table_mxa, accepting_m, start_m)
    return DFA(symbols, transitions, accepting, start=0)


def _check_alphabet(alphabet: str | Sequence[str]) -> tuple[str, ...]:
    symbols = tuple(alphabet)
    if not symbols:
        raise ValueError("the alphabet must not be empty")
    for symbol in symbols:
        if not isinstance(symbol, str) or len(symbol) != 1:
            raise ValueError(f"alphabet symbols must be single characters, got {symbol!r}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"the alphabet has repeated symbols: {''.join(symbols)!r}")
    return symbols


def _caret_message(pattern: str, message: str, position: int) -> str:
    return f"{message} at position {position}\n  {pattern}\n  {' ' * position}^"


def _subset_construction(
    nfa: ThompsonNFA, start: int, final: int, num_symbols: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reachable subset DFA over symbol classes.

    Returns (table [n, K] int64, accepting [n] bool, class_of_symbol [A] int64). Symbols that
    every labelled NFA edge treats alike form one class, so `.` over a large alphabet costs one
    column. DFA states are bitsets over the "important" NFA states: bit 0 is the final state,
    bit 1 + j the j-th state with a labelled edge. Raises StateLimitError past `limit` states.
    """
    labelled = [q for q, mask in enumerate(nfa.label) if mask]
    bit_of = [0] * len(nfa.label)
    bit_of[final] = 1
    for j, q in enumerate(labelled):
        bit_of[q] = 1 << (j + 1)
    closure = nfa.closures(bit_of)

    class_index: dict[int, int] = {}
    class_of_symbol = np.zeros(num_symbols, dtype=np.int64)
    representative: list[int] = []
    for symbol in range(num_symbols):
        signature = sum(1 << j for j, q in enumerate(labelled) if nfa.label[q] >> symbol & 1)
        if signature not in class_index:
            class_index[signature] = len(representative)
            representative.append(symbol)
        class_of_symbol[symbol] = class_index[signature]
    num_classes = len(representative)
    moves = [
        [(k, closure[nfa.target[q]]) for k, r in enumerate(representative) if nfa.label[q] >> r & 1]
        for q in labelled
    ]

    first = closure[start]
    sets = [first]
    index_of = {first: 0}
    flat: list[int] = []
    for current in sets:  # `sets` grows while we walk it: a breadth-first worklist
        successor = [0] * num_classes
        rest = current >> 1
        while rest:
            low_bit = rest & -rest
            rest ^= low_bit
            for k, bits in moves[low_bit.bit_length() - 1]:
                successor[k] |= bits
        for bits in successor:
            j = index_of.get(bits)
            if j is None:
                j = index_of[bits] = len(sets)
                if j >= limit:
                    raise StateLimitError(
                        f"subset construction passed {limit:,} states "
                        f"({SUBSET_LIMIT_FACTOR} x max_states={limit // SUBSET_LIMIT_FACTOR:,}) "
                        f"and was stopped: the DFA is almost certainly over the cap; raise "
                        f"DataConfig.max_states (or pass max_states= to compile_regex) to allow it"
                    )
                sets.append(bits)
            flat.append(j)
    table_nxk = np.array(flat, dtype=np.int64).reshape(len(sets), num_classes)
    accepting_n = np.array([bits & 1 for bits in sets], dtype=bool)
    return table_nxk, accepting_n, class_of_symbol


def _minimise(table_nxk: np.ndarray, accepting_n: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Partition refinement from {accepting, rejecting}; returns (table [m, K], accepting [m],
    start block).

    Moore rounds on numpy first: each re-labels states by (own block, block of each successor)
    and the partition is final when a round adds no block. That needs as many rounds as the
    longest shortest distinguishing word, so deep chains like `a{5000}` hand the partition
    reached so far to Hopcroft's O(K n log n) algorithm after MOORE_ROUNDS rounds.
    """
    labels_n = accepting_n.astype(np.int64)
    if labels_n.min() == labels_n.max():
        labels_n[:] = 0
    num_blocks = int(labels_n.max()) + 1
    for _ in range(MOORE_ROUNDS):
        key_n = labels_n
        for k in range(table_nxk.shape[1]):  # fold one column at a time; keys stay below n^2
            key_n = key_n * num_blocks + labels_n[table_nxk[:, k]]
            key_n = np.unique(key_n, return_inverse=True)[1].reshape(-1)
        new_count = int(key_n.max()) + 1
        if new_count == num_blocks:
            break
        labels_n, num_blocks = key_n, new_count
    else:
        labels_n = _hopcroft(table_nxk, labels_n, num_blocks)
    _, representative_m = np.unique(labels_n, return_index=True)
    table_mxk = labels_n[table_nxk[representative_m]]
    return table_mxk, accepting_n[representative_m], int(labels_n[0])


def _hopcroft(table_nxk: np.ndarray, labels_n: np.ndarray, num_blocks: int) -> np.ndarray:
    """Hopcroft refinement of a partition that is already coarser-or-equal to the final one.

    Every block but the largest starts as a splitter (valid for any such initial partition);
    a split block keeps its id for the larger half and the smaller half becomes a splitter.
    Returns block labels [n], numbered arbitrarily (callers only compare them).
    """
    num_states, num_classes = table_nxk.shape
    predecessors = []
    for k in range(num_classes):
        lists: list[list[int]] = [[] for _ in range(num_states)]
        for p, t in enumerate(table_nxk[:, k].tolist()):
            lists[t].append(p)
        predecessors.append(lists)
    block_of = labels_n.tolist()
    blocks: list[set[int]] = [set() for _ in range(num_blocks)]
    for q, b in enumerate(block_of):
        blocks[b].add(q)
    largest = max(range(num_blocks), key=lambda b: len(blocks[b]))
    waiting = set(range(num_blocks)) - {largest}
    while waiting:
        splitter = list(blocks[waiting.pop()])
        for lists in predecessors:
            touched: dict[int, list[int]] = {}
            for t in splitter:
                for p in lists[t]:
                    touched.setdefault(block_of[p], []).append(p)
            for b, inside in touched.items():
                if len(inside) == len(blocks[b]):
                    continue
                moved = set(inside)
                if 2 * len(moved) > len(blocks[b]):
                    moved = blocks[b] - moved  # relabel the smaller half
                blocks[b] -= moved
                new = len(blocks)
                blocks.append(moved)
                for q in moved:
                    block_of[q] = new
                waiting.add(new)  # the smaller half (the other is in `waiting` if b was)
    return np.array(block_of, dtype=np.int64)


def _canonical_order(
    table_mxa: np.ndarray, accepting_m: np.ndarray, start: int
) -> tuple[np.ndarray, np.ndarray]:
    """Renumber states breadth-first from `start`, successors in alphabet order.

    Level by level: the next level's states in order of first appearance in the row-major
    successors of the current level, which is exactly the order a FIFO queue would give.
    """
    num_states = len(accepting_m)
    new_id = np.full(num_states, -1, dtype=np.int64)
    new_id[start] = 0
    order = [np.array([start], dtype=np.int64)]
    assigned = 1
    frontier = order[0]
    while frontier.size:
        candidates = table_mxa[frontier].reshape(-1)
        candidates = candidates[new_id[candidates] < 0]
        unique, first_seen = np.unique(candidates, return_index=True)
        frontier = unique[np.argsort(first_seen)]
        new_id[frontier] = np.arange(assigned, assigned + frontier.size)
        assigned += frontier.size
        order.append(frontier)
    old_of_new = np.concatenate(order)
    return new_id[table_mxa[old_of_new]], accepting_m[old_of_new]
