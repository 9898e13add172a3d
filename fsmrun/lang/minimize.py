"""Array algorithms behind every minimal machine: determinisation of an explicit NFA, Moore and
Hopcroft partition refinement that respects state outputs, and canonical BFS numbering.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from fsmrun.base.errors import UserError

if TYPE_CHECKING:
    from fsmrun.lang.regex_parse import ThompsonNFA

__all__ = [
    "MOORE_ROUNDS",
    "DeterminiseLimitError",
    "canonical_order",
    "determinise",
    "refine",
    "thompson_subsets",
]

# Vectorised Moore rounds before refinement switches to Hopcroft (see refine).
MOORE_ROUNDS = 48


class DeterminiseLimitError(UserError):
    """Subset construction passed its state limit."""


def determinise(
    num_symbols: int,
    arcs: Iterable[tuple[int, int | None, int]],
    start: int,
    finals: set[int],
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Subset construction of an NFA given as arcs (src, symbol index or None for epsilon, dst).

    Returns (table [n, A] int64, accepting [n] bool) of the reachable subset DFA, the empty set
    included as a rejecting sink where some symbol leads nowhere; state 0 is the start set.
    Raises DeterminiseLimitError past `limit` subset states.
    """
    step: dict[tuple[int, int], set[int]] = {}
    epsilon: dict[int, set[int]] = {}
    for src, symbol, dst in arcs:
        if symbol is None:
            epsilon.setdefault(src, set()).add(dst)
        else:
            step.setdefault((src, symbol), set()).add(dst)

    def closure(states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        todo = list(seen)
        while todo:
            for nxt in epsilon.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)

    first = closure([start])
    sets = [first]
    index_of = {first: 0}
    flat: list[int] = []
    for current in sets:  # grows while walked: a breadth-first worklist
        for symbol in range(num_symbols):
            targets = closure(t for q in current for t in step.get((q, symbol), ()))
            j = index_of.get(targets)
            if j is None:
                j = index_of[targets] = len(sets)
                if j >= limit:
                    raise DeterminiseLimitError(
                        f"subset construction passed {limit:,} states and was stopped"
                    )
                sets.append(targets)
            flat.append(j)
    table_nxa = np.array(flat, dtype=np.int64).reshape(len(sets), num_symbols)
    accepting_n = np.array([bool(s & finals) for s in sets], dtype=bool)
    return table_nxa, accepting_n


def thompson_subsets(
    nfa: ThompsonNFA, start: int, final: int, num_symbols: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reachable subset DFA over symbol classes.

    Returns (table [n, K] int64, accepting [n] bool, class_of_symbol [A] int64). Symbols that
    every labelled NFA edge treats alike form one class, so `.` over a large alphabet costs one
    column. DFA states are bitsets over the "important" NFA states: bit 0 is the final state,
    bit 1 + j the j-th state with a labelled edge. Raises DeterminiseLimitError past `limit`
    states.
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
    # The interning below repeats determinise's on purpose: a helper call per transition costs
    # about 10% of compile time on large regexes (benchmarks/fsm_compile.py).
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
                    raise DeterminiseLimitError(
                        f"subset construction passed {limit:,} states and was stopped"
                    )
                sets.append(bits)
            flat.append(j)
    table_nxk = np.array(flat, dtype=np.int64).reshape(len(sets), num_classes)
    accepting_n = np.array([bits & 1 for bits in sets], dtype=bool)
    return table_nxk, accepting_n, class_of_symbol


def refine(table_nxk: np.ndarray, outputs_n: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Coarsest partition that refines "same output" and is closed under transitions.

    Returns (table [m, K], outputs [m], block of state 0), blocks numbered arbitrarily. Moore
    rounds on numpy first: each re-labels states by (own block, block of each successor) and
    the partition is final when a round adds no block. That needs as many rounds as the
    longest shortest distinguishing word, so deep chains like `a{5000}` hand the partition
    reached so far to Hopcroft's O(K n log n) algorithm after MOORE_ROUNDS rounds.
    """
    labels_n = np.unique(outputs_n, return_inverse=True)[1].reshape(-1).astype(np.int64)
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
    return table_mxk, outputs_n[representative_m], int(labels_n[0])


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


def canonical_order(
    table_mxa: np.ndarray, outputs_m: np.ndarray, start: int
) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the states reachable from `start` breadth-first, successors in alphabet order.

    Level by level: the next level's states in order of first appearance in the row-major
    successors of the current level, which is exactly the order a FIFO queue would give.
    Unreachable states are dropped.
    """
    num_states = len(outputs_m)
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
    return new_id[table_mxa[old_of_new]], outputs_m[old_of_new]
