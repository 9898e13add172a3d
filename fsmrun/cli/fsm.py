"""`fsmrun fsm`: compile a regex and show its minimal DFA (or print it as Graphviz)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import data_console

if TYPE_CHECKING:
    from fsmrun.core.fsm import DFA


def transition_table(dfa: DFA) -> Table:
    """One row per state: marks (start, accepting, dead) and the target on each symbol."""
    table = Table(title="transitions (marks: -> start, * accepting, x dead)", title_justify="left")
    table.add_column("state", justify="right")
    for symbol in dfa.alphabet:
        table.add_column(Text(symbol), justify="right")
    for q in range(dfa.num_states):
        marks = ("->" if q == dfa.start else "") + ("*" if dfa.accepting[q] else "")
        marks += "x" if q == dfa.dead else ""
        table.add_row(f"{marks} {q}".strip(), *(str(int(t)) for t in dfa.transitions[q]))
    return table


def counts_table(dfa: DFA, max_len: int) -> Table:
    """Accepted strings of each length 0..max_len beside all strings of that length."""
    table = Table(title="accepted strings by length", title_justify="left")
    table.add_column("length", justify="right")
    table.add_column("accepted", justify="right")
    table.add_column("of", justify="right")
    table.add_column("fraction", justify="right")
    k = len(dfa.alphabet)
    for n in range(max_len + 1):
        accepted = dfa.count_accepted(n)
        table.add_row(str(n), str(accepted), str(k**n), f"{accepted / k**n:.4f}")
    return table


def fsm(
    regex: Annotated[
        str, typer.Argument(help="Regular expression (full match).", show_default=False)
    ],
    alphabet: Annotated[
        str,
        typer.Option(help="Alphabet symbols, one character each, e.g. ab.", show_default=False),
    ],
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz source on stdout.")] = False,
    max_len: Annotated[
        int, typer.Option(help="Count accepted strings of lengths 0..N.", min=0)
    ] = 10,
    max_states: Annotated[
        int, typer.Option(help="Refuse DFAs with more states than this.", min=1)
    ] = 10_000,
) -> None:
    """Compile REGEX to its minimal DFA: states, dead state, transitions, accepted counts.

    Example:  fsmrun fsm '(a|b)*ab' --alphabet ab --dot | dot -Tpng -o dfa.png
    """
    from fsmrun.core.fsm import compile_regex

    dfa = compile_regex(regex, alphabet, max_states=max_states)
    if dot:
        sys.stdout.write(dfa.to_dot())
        return
    out = data_console()
    live = int(dfa.live.sum())
    out.print(
        Text(
            f"regex {regex!r} over {''.join(dfa.alphabet)!r}: {dfa.num_states} states "
            f"(start {dfa.start}, {int(dfa.accepting.sum())} accepting, {live} live), "
            f"dead state: {'none' if dfa.dead is None else dfa.dead}"
        )
    )
    out.print(transition_table(dfa))
    out.print(counts_table(dfa, max_len))
