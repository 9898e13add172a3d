"""Regular expressions to minimal complete DFAs over an explicit alphabet.

`DFA` is the immutable automaton every other module reads; `compile_regex` builds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property

import numpy as np

DFA_JSON_FORMAT = "fsmrun-dfa-1"


class RegexError(ValueError):
    """A malformed pattern or a symbol outside the alphabet (message has a caret line)."""


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
        """`table[k][q]` = number of strings of length k leading from q to acceptance, k <= n."""
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
    """Compile `pattern` (full-match semantics) to the minimal complete DFA over `alphabet`."""
    raise NotImplementedError("compile_regex is being written (issue 2)")
