"""Language sources other than regexes: DFA tables, AT&T automaton files, random DFAs.

Each builder returns the minimal, canonically numbered DFA (`fsm.minimal_dfa`), so equivalent
definitions from any source give identical `DFA.to_json()`; `languages.build_dfa` dispatches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fsmrun.base.errors import UserError
from fsmrun.lang.fsm import DFA, minimal_dfa
from fsmrun.lang.minimize import DeterminiseLimitError, determinise
from fsmrun.schemas.config import DfaTableConfig

__all__ = [
    "RANDOM_DFA_TRIES",
    "SourceError",
    "dfa_from_table",
    "parse_att",
    "random_dfa",
    "read_att",
]

# Draws before random_dfa gives up finding a minimal machine of the requested size.
RANDOM_DFA_TRIES = 1000
# Labels that mean epsilon in an AT&T file without a symbol table (compared lower-cased).
EPSILON_LABELS = ("<eps>", "<epsilon>")


class SourceError(UserError):
    """A malformed DFA table, AT&T file or random-DFA request; the message says where and how
    to fix it."""


def dfa_from_table(
    table: DfaTableConfig, alphabet: str | None = None, *, max_states: int = 10_000
) -> DFA:
    """Minimal DFA of an explicit table (membership with `accepting`, Moore with `outputs`).

    The alphabet is `alphabet` when given (it must hold every symbol of the table), else the
    table's symbols sorted. A missing transition goes to an added dead state: rejecting for
    membership; for a Moore machine its output is `dead_output`, required if any is missing.
    """
    where = "data.dfa"
    index = {name: i for i, name in enumerate(table.states)}
    if len(index) != len(table.states):
        repeated = sorted({s for s in table.states if table.states.count(s) > 1})
        raise SourceError(f"{where}.states repeats {repeated}; give each state once")

    def state(name: str, entry: str) -> int:
        if name not in index:
            raise SourceError(
                f"{where}.{entry}: state {name!r} is not in states {table.states}; "
                f"add it to states or fix the name"
            )
        return index[name]

    start = state(table.start, "start")
    arcs = _table_arcs(table)
    symbols = _table_alphabet(alphabet, [symbol for _, _, symbol, _ in arcs], where)
    n = len(table.states)
    transitions = np.full((n, len(symbols)), -1, dtype=np.int64)
    for entry, src, symbol, dst in arcs:
        q, i, t = state(src, entry), symbols.index(symbol), state(dst, entry)
        if transitions[q, i] not in (-1, t):
            raise SourceError(
                f"{where}.{entry}: state {src!r} already has another target on {symbol!r}; a "
                f"DFA table has one target per state and symbol"
            )
        transitions[q, i] = t
    if (table.accepting is None) == (table.outputs is None):
        raise SourceError(
            f"{where}: give exactly one of accepting (membership) and outputs (Moore machine)"
        )
    if table.accepting is not None:
        outputs = np.zeros(n + 1, dtype=bool)
        for name in table.accepting:
            outputs[state(name, "accepting")] = True
        names, dead_output = None, 0
    else:
        names, outputs, dead_output = _table_outputs(table, index, where)
    missing = np.argwhere(transitions < 0)
    if len(missing) and dead_output is None:
        q, i = missing[0]
        raise SourceError(
            f"{where}: state {table.states[q]!r} has no transition on {symbols[i]!r} "
            f"({len(missing)} missing in all); a Moore table must be total or set dead_output"
        )
    transitions[transitions < 0] = n  # the added dead state, a sink
    transitions = np.vstack([transitions, np.full((1, len(symbols)), n, dtype=np.int64)])
    outputs[n] = dead_output if dead_output is not None else 0
    return minimal_dfa(
        symbols, transitions, outputs, start, output_names=names, max_states=max_states
    )


def _table_arcs(table: DfaTableConfig) -> list[tuple[str, str, str, str]]:
    """(entry name for messages, source, symbol, target) for each listed transition."""
    if isinstance(table.transitions, dict):
        return [
            (f"transitions.{src}.{symbol}", src, symbol, dst)
            for src, row in table.transitions.items()
            for symbol, dst in row.items()
        ]
    return [(f"transitions[{i}]", *arc) for i, arc in enumerate(table.transitions)]


def _table_alphabet(alphabet: str | None, used: Sequence[str], where: str) -> tuple[str, ...]:
    for symbol in used:
        if len(symbol) != 1:
            raise SourceError(f"{where}: symbol {symbol!r} must be a single character")
    if alphabet is None:
        if not used:
            raise SourceError(
                f"{where}: no transitions and no alphabet; "
                "give the alphabet (data.alphabet, or --alphabet of `fsmrun fsm`)"
            )
        return tuple(sorted(set(used)))
    foreign = sorted(set(used) - set(alphabet))
    if foreign:
        raise SourceError(
            f"{where}: symbols {foreign} are not in data.alphabet {alphabet!r}; add them to "
            f"the alphabet or leave the alphabet out to take the table's symbols"
        )
    return tuple(alphabet)


def _table_outputs(
    table: DfaTableConfig, index: dict[str, int], where: str
) -> tuple[list[str] | None, np.ndarray, int | None]:
    """(output names, outputs [n + 1] with a slot for the dead state, dead output or None)."""
    assert table.outputs is not None
    values = [*table.outputs.values()] + (
        [table.dead_output] if table.dead_output is not None else []
    )
    names = table.output_names
    if names is None and any(isinstance(v, str) for v in values):
        if not all(isinstance(v, str) for v in values):
            raise SourceError(f"{where}.outputs: mix of names and numbers; give output_names")
        names = sorted(set(values))  # type: ignore[type-var]
    limit = len(names) if names is not None else None

    def output(value: int | str, entry: str) -> int:
        if isinstance(value, str):
            if names is None or value not in names:
                raise SourceError(f"{where}.{entry}: output {value!r} is not in {names}")
            return names.index(value)
        if value < 0:
            raise SourceError(
                f"{where}.{entry}: output {value} is negative; outputs are class indices "
                f"0, 1, ... (or names from output_names)"
            )
        if limit is not None and value >= limit:
            raise SourceError(
                f"{where}.{entry}: output {value} is outside 0..{limit - 1}; outputs are "
                f"class indices (or names from output_names)"
            )
        return value

    outputs = np.zeros(len(index) + 1, dtype=np.int64)
    for name, value in table.outputs.items():
        if name not in index:
            raise SourceError(f"{where}.outputs: state {name!r} is not in states")
        outputs[index[name]] = output(value, f"outputs.{name}")
    unset = [s for s in index if s not in table.outputs]
    if unset:
        raise SourceError(f"{where}.outputs: no output for states {unset}; give every state one")
    dead = None if table.dead_output is None else output(table.dead_output, "dead_output")
    return names, outputs, dead


def read_att(
    path: str | Path,
    isymbols: str | Path | None = None,
    *,
    alphabet: str | None = None,
    max_states: int = 10_000,
) -> DFA:
    """Minimal DFA of an AT&T text automaton file (see `parse_att`)."""
    texts = []
    for file in (path, isymbols):
        if file is None:
            texts.append(None)
            continue
        try:
            texts.append(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise SourceError(f"{file}: cannot read: {err}") from None
    return parse_att(
        texts[0] or "",
        source=str(path),
        isymbols=texts[1],
        isymbols_source=str(isymbols),
        alphabet=alphabet,
        max_states=max_states,
    )


def parse_att(
    text: str,
    *,
    source: str = "<att>",
    isymbols: str | None = None,
    isymbols_source: str = "<isymbols>",
    alphabet: str | None = None,
    max_states: int = 10_000,
) -> DFA:
    """Minimal DFA of AT&T text: arcs `src dst label [weight]` or `src dst in out [weight]`
    (in must equal out), final states `state [weight]`. Weights are read and ignored, except
    a final weight `inf` (OpenFst's semiring zero), which leaves the state not final.

    The first line's source state is the start (the OpenFst convention). Epsilon arcs and
    nondeterminism are removed by subset construction. With a symbol table (`symbol id`
    lines, id 0 = epsilon) arc labels may be names or ids and the alphabet is the table's
    symbols in id order; without one, `<eps>` is epsilon and the alphabet is the sorted
    labels. `alphabet`, when given, replaces either (it must hold every label).
    """
    table = _parse_symbols(isymbols, isymbols_source) if isymbols is not None else None
    arcs: list[tuple[int, str | None, int]] = []
    finals: set[int] = set()
    start = None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source}:{number}"
        states = [_state_id(f, where) for f in fields[: 1 if len(fields) <= 2 else 2]]
        start = states[0] if start is None else start
        if len(fields) <= 2:
            if not _is_zero_weight(fields[1:], where):
                finals.add(states[0])
            continue
        if len(fields) == 3 or (
            len(fields) == 4 and (fields[2] == fields[3] or _is_number(fields[3]))
        ):
            label = fields[2]  # an acceptor arc with or without weight, or in = out
            weight = fields[3:] if len(fields) == 4 and fields[2] != fields[3] else []
        elif len(fields) in (4, 5):
            if fields[2] != fields[3]:
                raise SourceError(
                    f"{where}: transducer arc {fields[2]!r}:{fields[3]!r} has different input "
                    f"and output; fsmrun reads acceptors (input = output on every arc)"
                )
            weight = fields[4:]
            label = fields[2]
        else:
            raise SourceError(
                f"{where}: {len(fields)} fields; expected 'src dst label [weight]', "
                f"'src dst in out [weight]' or 'state [weight]'"
            )
        _is_zero_weight(weight, where)  # checked only: an arc's weight does not matter here
        arcs.append((states[0], _symbol(label, table, where), states[1]))
    if start is None:
        raise SourceError(f"{source}: no arcs and no final states; the file is empty")
    symbols = _att_alphabet(arcs, table, alphabet, source)
    column = {symbol: i for i, symbol in enumerate(symbols)}
    numbered = [(src, None if s is None else column[s], dst) for src, s, dst in arcs]
    try:
        table_nxa, accepting_n = determinise(len(symbols), numbered, start, finals, 8 * max_states)
    except DeterminiseLimitError as err:
        raise SourceError(f"{source}: {err}; raise data.max_states to allow it") from None
    return minimal_dfa(symbols, table_nxa, accepting_n, 0, max_states=max_states)


def _parse_symbols(text: str, source: str) -> dict[str, str | None]:
    """Label (name or id) -> symbol, None for epsilon (id 0)."""
    table: dict[str, str | None] = {}
    ids: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{source}:{number}"
        if len(fields) != 2 or not fields[1].isdigit():
            raise SourceError(f"{where}: expected 'symbol id' (an integer id), got {line!r}")
        name, sid = fields[0], int(fields[1])
        if sid in ids or name in table:
            raise SourceError(f"{where}: symbol {name!r} or id {sid} is listed twice")
        ids.add(sid)
        symbol = None if sid == 0 else name
        if symbol is not None and len(symbol) != 1:
            raise SourceError(
                f"{where}: symbol {name!r} must be a single character (fsmrun alphabets are)"
            )
        table[name] = symbol
        table[str(sid)] = symbol
    return table


def _symbol(label: str, table: dict[str, str | None] | None, where: str) -> str | None:
    if table is not None:
        if label not in table:
            raise SourceError(f"{where}: label {label!r} is not in the symbol table")
        return table[label]
    if label.lower() in EPSILON_LABELS:
        return None
    if len(label) != 1:
        raise SourceError(
            f"{where}: label {label!r} must be a single character or <eps>; give a symbol "
            f"table (isymbols) to read numeric labels"
        )
    return label


def _att_alphabet(
    arcs: list[tuple[int, str | None, int]],
    table: dict[str, str | None] | None,
    alphabet: str | None,
    source: str,
) -> tuple[str, ...]:
    used = {s for _, s, _ in arcs if s is not None}
    if alphabet is not None:
        foreign = sorted(used - set(alphabet))
        if foreign:
            raise SourceError(f"{source}: labels {foreign} are not in data.alphabet {alphabet!r}")
        return tuple(alphabet)
    if table is not None:
        by_id = sorted((int(k), s) for k, s in table.items() if k.isdigit() and s is not None)
        return tuple(s for _, s in by_id)
    if not used:
        raise SourceError(
            f"{source}: no labelled arcs; give the alphabet "
            "(data.alphabet, or --alphabet of `fsmrun fsm`)"
        )
    return tuple(sorted(used))


def _state_id(field: str, where: str) -> int:
    if not field.isdigit():
        raise SourceError(f"{where}: state {field!r} must be a non-negative integer")
    return int(field)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _is_zero_weight(fields: list[str], where: str) -> bool:
    """Whether an optional weight field is `inf`: the zero of OpenFst's tropical and log
    semirings, i.e. no final weight or no arc (SourceError if it is not a number)."""
    if not fields:
        return False
    if not _is_number(fields[0]) or math.isnan(float(fields[0])):
        raise SourceError(f"{where}: weight {fields[0]!r} is not a number")
    return float(fields[0]) == math.inf


def random_dfa(
    num_states: int, alphabet: str | Sequence[str], accepting_fraction: float = 0.5, seed: int = 0
) -> DFA:
    """A random minimal DFA with exactly `num_states` states, all reachable.

    Each draw (numpy Generator seeded with `seed`): a random spanning tree from state 0 (each
    new state hangs off a uniformly chosen free (state, symbol) slot of an earlier one, so all
    states are reachable), the other transitions uniform, and round(accepting_fraction * n)
    states accepting, chosen uniformly. Draws are rejected until the machine is minimal (up to
    RANDOM_DFA_TRIES). SourceError when that is impossible or does not happen.
    """
    symbols = tuple(alphabet)
    n, k = num_states, len(symbols)
    if n < 1 or k < 1 or not 0.0 <= accepting_fraction <= 1.0:
        raise SourceError(
            f"random_dfa needs num_states >= 1, a non-empty alphabet and an accepting fraction "
            f"in [0, 1] (got {n}, {''.join(symbols)!r}, {accepting_fraction})"
        )
    num_accepting = math.floor(accepting_fraction * n + 0.5)
    if n > 1 and num_accepting in (0, n):
        raise SourceError(
            f"random_dfa: accepting_fraction {accepting_fraction} gives {num_accepting} of "
            f"{n} states accepting, and then all states are equivalent; a minimal DFA with "
            f"{n} > 1 states needs both accepting and rejecting states"
        )
    rng = np.random.default_rng(seed)
    for _ in range(RANDOM_DFA_TRIES):
        transitions = rng.integers(0, n, size=(n, k))
        taken = np.zeros((n, k), dtype=bool)
        for q in range(1, n):
            free = np.flatnonzero(~taken[:q].reshape(-1))
            slot = int(rng.choice(free))
            transitions[slot // k, slot % k] = q
            taken[slot // k, slot % k] = True
        accepting = np.zeros(n, dtype=bool)
        accepting[rng.permutation(n)[:num_accepting]] = True
        dfa = minimal_dfa(symbols, transitions, accepting, 0, max_states=n)
        if dfa.num_states == n:
            return dfa
    raise SourceError(
        f"random_dfa: no minimal DFA with {n} states found in {RANDOM_DFA_TRIES} draws "
        f"(alphabet {''.join(symbols)!r}, accepting_fraction {accepting_fraction}); try an "
        f"accepting fraction nearer 0.5, a larger alphabet or another seed"
    )
