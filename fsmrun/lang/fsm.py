"""Regular expressions to minimal complete DFAs over an explicit alphabet.

`DFA` is the immutable automaton every other module reads; `compile_regex` builds it.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from fsmrun.base.errors import UserError
from fsmrun.lang.minimize import (
    DeterminiseLimitError,
    canonical_order,
    refine,
    thompson_subsets,
)
from fsmrun.lang.regex_parse import Parser, RegexSyntaxError, ThompsonNFA, min_dfa_states
from fsmrun.schemas.data import combining_mark_message

__all__ = [
    "DFA",
    "DFA_JSON_FORMAT",
    "MEMBERSHIP_OUTPUTS",
    "RegexError",
    "StateLimitError",
    "compile_regex",
    "minimal_dfa",
]

DFA_JSON_FORMAT = "fsmrun-dfa-1"
MEMBERSHIP_OUTPUTS = ("reject", "accept")

# The subset construction stops once it holds this many times `max_states` states. The cap is
# about the *minimal* DFA, which is checked after minimisation; the subset DFA is usually within
# a small factor of it, so a generous multiple keeps false alarms rare while a regex far over
# the cap still fails within a fraction of a second.
SUBSET_LIMIT_FACTOR = 8


class RegexError(UserError):
    """A malformed pattern or a symbol outside the alphabet (message has a caret line)."""


RAISE_CAP_HINT = (
    "raise the cap to allow it: data.max_states in the experiment (or --set data.max_states=N), "
    "--max-states for `fsmrun fsm`"
)


class StateLimitError(UserError):
    """The DFA of a regex would exceed the state cap (`max_states`, DataConfig.max_states)."""


class DFA:
    """A complete deterministic automaton, states numbered canonically (BFS from start).

    `transitions[q, i]` is the state reached from `q` on `alphabet[i]`. Every state carries an
    output class `outputs[q]` in 0..num_outputs-1 (a Moore machine); membership is the case
    num_outputs = 2 with names ("reject", "accept"), built from `accepting` alone. For any
    machine `accepting[q]` is `outputs[q] != 0` (output 0 plays "reject"), and `dead` is the
    index of the sink with output 0, or None.
    """

    def __init__(
        self,
        alphabet: Sequence[str],
        transitions: np.ndarray,
        accepting: np.ndarray | None = None,
        start: int = 0,
        *,
        outputs: np.ndarray | None = None,
        num_outputs: int | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        self.alphabet: tuple[str, ...] = tuple(alphabet)
        transitions = np.array(transitions, dtype=np.int64)
        num_states = transitions.shape[0]
        if (accepting is None) == (outputs is None):
            raise ValueError("give exactly one of accepting (membership) and outputs (Moore)")
        if accepting is not None:
            outputs = np.array(accepting, dtype=bool).astype(np.int64)
            num_outputs, output_names = 2, None
        outputs = np.array(outputs, dtype=np.int64)
        if transitions.shape != (num_states, len(self.alphabet)) or outputs.shape != (num_states,):
            raise ValueError(
                "transitions must be [num_states, len(alphabet)], accepting/outputs [num_states]"
            )
        if num_states and (transitions.min() < 0 or transitions.max() >= num_states):
            raise ValueError("transition targets must be state indices")
        self.output_names: tuple[str, ...] = _output_names(outputs, num_outputs, output_names)
        self.num_outputs = len(self.output_names)
        transitions.setflags(write=False)
        outputs.setflags(write=False)
        accepting = outputs != 0
        accepting.setflags(write=False)
        self.transitions = transitions
        self.outputs = outputs
        self.accepting = accepting
        self.start = int(start)
        self._symbol_index = {s: i for i, s in enumerate(self.alphabet)}
        sinks = np.flatnonzero(
            ~accepting & (transitions == np.arange(num_states)[:, None]).all(axis=1)
        )
        self.dead: int | None = int(sinks[0]) if len(sinks) else None

    @property
    def is_membership(self) -> bool:
        """Plain accept/reject outputs (the JSON then has no output fields)."""
        return self.output_names == MEMBERSHIP_OUTPUTS

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

    def output_of(self, s: str) -> int:
        """Output class of the state `s` ends in (membership: 1 accepted, 0 rejected)."""
        return int(self.outputs[self.run(s)[-1]])

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
        """Canonical JSON (sorted keys, no spaces): equal DFAs give identical bytes.

        Output fields (`outputs`, `num_outputs`, `output_names`) appear only for a machine
        that is not plain membership.
        """
        doc = {
            "format": DFA_JSON_FORMAT,
            "alphabet": list(self.alphabet),
            "start": self.start,
            "accepting": [bool(a) for a in self.accepting],
            "transitions": self.transitions.tolist(),
            "dead": self.dead,
            "num_states": self.num_states,
        }
        if not self.is_membership:
            doc["outputs"] = self.outputs.tolist()
            doc["num_outputs"] = self.num_outputs
            doc["output_names"] = list(self.output_names)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DFA:
        doc = json.loads(text)
        if doc.get("format") != DFA_JSON_FORMAT:
            raise ValueError(f"not an fsmrun DFA (format {doc.get('format')!r})")
        if "outputs" in doc:
            return cls(
                doc["alphabet"],
                np.array(doc["transitions"]),
                start=doc["start"],
                outputs=np.array(doc["outputs"]),
                output_names=doc["output_names"],
            )
        return cls(
            doc["alphabet"], np.array(doc["transitions"]), np.array(doc["accepting"]), doc["start"]
        )

    def to_att(self) -> str:
        """AT&T text acceptor: one `src<TAB>dst<TAB>symbol` line per transition, the start
        state's first, then one line per accepting state. Membership machines only."""
        if not self.is_membership:
            raise ValueError("an AT&T acceptor holds membership only, not Moore outputs")
        order = [self.start] + [q for q in range(self.num_states) if q != self.start]
        lines = [
            f"{q}\t{int(self.transitions[q, i])}\t{symbol}"
            for q in order
            for i, symbol in enumerate(self.alphabet)
        ]
        lines += [str(q) for q in order if self.accepting[q]]
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """Graphviz source; the dead state and edges into it are left out for readability.

        Moore machines show each state's output name in its label (`q / name`)."""
        return "\n".join(["digraph DFA {", "  rankdir=LR;", *self.dot_lines(), "}"]) + "\n"

    def dot_lines(self, prefix: str = "", indent: str = "  ") -> list[str]:
        """The nodes and edges of `to_dot`, node ids prefixed with `prefix` (so that two
        machines can share one graph, e.g. as clusters)."""
        lines = [f'{indent}{prefix}__start [shape=point, label=""];']
        for q in range(self.num_states):
            if q == self.dead:
                continue
            if self.is_membership:
                shape, label = ("doublecircle" if self.accepting[q] else "circle"), f"{q}"
            else:
                shape, label = "circle", f"{q} / {_escape(self.output_names[self.outputs[q]])}"
            lines.append(f'{indent}{prefix}{q} [shape={shape}, label="{label}"];')
        lines.append(f"{indent}{prefix}__start -> {prefix}{self.start};")
        for q in range(self.num_states):
            if q == self.dead:
                continue
            by_target: dict[int, list[str]] = {}
            for i, sym in enumerate(self.alphabet):
                t = int(self.transitions[q, i])
                if t != self.dead:
                    by_target.setdefault(t, []).append(sym)
            for t, syms in by_target.items():
                lines.append(
                    f'{indent}{prefix}{q} -> {prefix}{t} [label="{_escape(",".join(syms))}"];'
                )
        return lines

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DFA) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        symbols = "".join(self.alphabet)
        outputs = "" if self.is_membership else f", num_outputs={self.num_outputs}"
        return f"DFA(alphabet={symbols!r}, num_states={self.num_states}, dead={self.dead}{outputs})"


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
        # Refuse before building anything when the language alone proves the DFA too big:
        # building `a{100000}` to find out takes half a minute.
        at_least = min_dfa_states(ast)
        if at_least > max_states:
            raise StateLimitError(
                f"the minimal DFA has at least {at_least:,} states (that many are distinct "
                f"along its shortest or longest accepted strings), over the cap of "
                f"{max_states:,}; {RAISE_CAP_HINT}"
            )
        nfa = ThompsonNFA()
        start, final = nfa.build(ast)
    except RegexSyntaxError as err:
        raise RegexError(_caret_message(pattern, err.message, err.position)) from None
    except RecursionError:
        raise RegexError(f"pattern nested too deeply: {pattern[:60]!r}") from None
    limit = SUBSET_LIMIT_FACTOR * max_states
    try:
        table_nxk, accepting_n, class_of_symbol = thompson_subsets(
            nfa, start, final, len(symbols), limit
        )
    except DeterminiseLimitError:
        raise StateLimitError(
            f"subset construction passed {limit:,} states ({SUBSET_LIMIT_FACTOR} x the cap of "
            f"{max_states:,}) and was stopped: the DFA is almost certainly over the cap; "
            f"{RAISE_CAP_HINT}"
        ) from None
    table_mxk, accepting_m, start_m = refine(table_nxk, accepting_n)
    _check_cap(len(accepting_m), max_states)
    table_mxa = table_mxk[:, class_of_symbol]
    transitions, accepting = canonical_order(table_mxa, accepting_m, start_m)
    return DFA(symbols, transitions, accepting, start=0)


def minimal_dfa(
    alphabet: str | Sequence[str],
    transitions: np.ndarray,
    outputs: np.ndarray,
    start: int = 0,
    *,
    num_outputs: int | None = None,
    output_names: Sequence[str] | None = None,
    max_states: int = 10_000,
) -> DFA:
    """The minimal, canonically numbered DFA of a complete table with per-state outputs.

    `transitions` is [n, len(alphabet)], `outputs` [n] ints (bools for membership, which also
    needs neither `num_outputs` nor `output_names`). Unreachable states are dropped, states
    with equal outputs and futures merged (refinement starts from the partition by output),
    and the result numbered breadth-first from the start, exactly as `compile_regex` does, so
    equivalent machines give identical JSON. StateLimitError above `max_states` states.
    """
    symbols = _check_alphabet(alphabet)
    table_nxa = np.asarray(transitions, dtype=np.int64)
    outputs_n = np.asarray(outputs)
    membership = outputs_n.dtype == bool
    table_rxa, outputs_r = canonical_order(table_nxa, outputs_n.astype(np.int64), int(start))
    table_mxa, outputs_m, start_m = refine(table_rxa, outputs_r)
    _check_cap(len(outputs_m), max_states)
    table_mxa, outputs_m = canonical_order(table_mxa, outputs_m, start_m)
    if membership:
        return DFA(symbols, table_mxa, outputs_m.astype(bool), start=0)
    return DFA(
        symbols,
        table_mxa,
        start=0,
        outputs=outputs_m,
        num_outputs=num_outputs,
        output_names=output_names,
    )


def _check_cap(num_states: int, max_states: int) -> None:
    if num_states > max_states:
        raise StateLimitError(
            f"the minimal DFA has {num_states:,} states, over the cap of {max_states:,}; "
            f"{RAISE_CAP_HINT}"
        )


def _output_names(
    outputs: np.ndarray, num_outputs: int | None, names: Sequence[str] | None
) -> tuple[str, ...]:
    """The output names, validated: `names`, else reject/accept for 2 classes, else "0".."k-1"."""
    if names is not None:
        names = tuple(str(n) for n in names)
        if len(set(names)) != len(names):
            raise ValueError(f"output names repeat a name: {list(names)}")
        if num_outputs is not None and num_outputs != len(names):
            raise ValueError(f"num_outputs={num_outputs} but {len(names)} output names")
        num_outputs = len(names)
    elif num_outputs is None:
        num_outputs = int(outputs.max()) + 1 if outputs.size else 1
    if num_outputs < 1 or (outputs.size and not 0 <= outputs.min() <= outputs.max() < num_outputs):
        raise ValueError(f"outputs must lie in 0..{num_outputs - 1}")
    if names is None:
        names = MEMBERSHIP_OUTPUTS if num_outputs == 2 else tuple(map(str, range(num_outputs)))
    return names


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"')


def _check_alphabet(alphabet: str | Sequence[str]) -> tuple[str, ...]:
    symbols = tuple(alphabet)
    if not symbols:
        raise ValueError("the alphabet must not be empty")
    for symbol in symbols:
        if not isinstance(symbol, str) or len(symbol) != 1:
            raise ValueError(f"alphabet symbols must be single characters, got {symbol!r}")
        if unicodedata.category(symbol).startswith("M"):
            raise ValueError(combining_mark_message(symbol))
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"the alphabet has repeated symbols: {''.join(symbols)!r}")
    return symbols


def _caret_message(pattern: str, message: str, position: int) -> str:
    return f"{message} at position {position}\n  {pattern}\n  {' ' * position}^"
