"""The languages fsmrun trains on: `fsmrun experiments` lists the built-in experiments with
their languages (then the built-in sweep suites); `fsmrun fsm` builds the minimal DFA of any
language source and shows it (or prints Graphviz). Neither loads torch."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import data_console

if TYPE_CHECKING:
    from fsmrun.lang.fsm import DFA

MAX_COUNT_LEN = 1000  # --max-len cap: the count tables stay small and quick to build
COUNT_DIGITS = 15  # counts with more digits print in scientific notation


def transition_table(dfa: DFA) -> Table:
    """One row per state: marks (start, accepting, dead), the target on each symbol, and the
    output name for a Moore machine."""
    table = Table(title="transitions (marks: -> start, * accepting, x dead)", title_justify="left")
    table.add_column("state", justify="right")
    for symbol in dfa.alphabet:
        table.add_column(Text(symbol), justify="right")
    if not dfa.is_membership:
        table.add_column("output")
    for q in range(dfa.num_states):
        marks = ("->" if q == dfa.start else "") + ("*" if dfa.accepting[q] else "")
        marks += "x" if q == dfa.dead else ""
        output = [] if dfa.is_membership else [Text(dfa.output_names[dfa.outputs[q]])]
        table.add_row(f"{marks} {q}".strip(), *(str(int(t)) for t in dfa.transitions[q]), *output)
    return table


def _count(n: int) -> str:
    """An exact count, or scientific notation once it has more than COUNT_DIGITS digits."""
    return str(n) if n < 10**COUNT_DIGITS else f"{Decimal(n):.4e}"


def counts_table(dfa: DFA, max_len: int) -> Table:
    """Accepted strings of each length 0..max_len beside all strings of that length."""
    from fsmrun.lang.options import counts_by_length

    table = Table(title="accepted strings by length", title_justify="left")
    table.add_column("length", justify="right")
    table.add_column("accepted", justify="right")
    table.add_column("of", justify="right")
    table.add_column("fraction", justify="right")
    k = len(dfa.alphabet)
    accepting = [q for q in range(dfa.num_states) if dfa.accepting[q]]
    for n, ways in enumerate(counts_by_length(dfa, max_len)):
        accepted = sum(ways[q] for q in accepting)
        table.add_row(str(n), _count(accepted), _count(k**n), f"{accepted / k**n:.4f}")
    return table


def output_counts_table(dfa: DFA, max_len: int) -> Table:
    """Strings of each length 0..max_len by the output class of the state they end in."""
    from fsmrun.lang.options import counts_by_length

    table = Table(title="strings by length and output", title_justify="left")
    table.add_column("length", justify="right")
    for name in dfa.output_names:
        table.add_column(Text(name), justify="right")
    outputs = [int(o) for o in dfa.outputs]
    for n, ways in enumerate(counts_by_length(dfa, max_len)):
        by_output = [0] * dfa.num_outputs
        for q, w in enumerate(ways):
            by_output[outputs[q]] += w
        table.add_row(str(n), *map(_count, by_output))
    return table


def fsm(
    source: Annotated[
        str | None,
        typer.Argument(
            help="Regular expression (full match; needs --alphabet), or an experiment .toml.",
            show_default=False,
        ),
    ] = None,
    alphabet: Annotated[
        str | None,
        typer.Option(
            help="Alphabet symbols, one character each, e.g. ab (regex, --random; optional "
            "for --dfa and --att).",
            show_default=False,
        ),
    ] = None,
    dfa_file: Annotated[
        Path | None,
        typer.Option(
            "--dfa",
            help="TOML file holding a DFA table (the fields of [data.dfa]).",
            dir_okay=False,
        ),
    ] = None,
    att: Annotated[
        Path | None, typer.Option(help="AT&T text automaton file.", dir_okay=False)
    ] = None,
    isymbols: Annotated[
        Path | None, typer.Option(help="Symbol table of the --att file.", dir_okay=False)
    ] = None,
    random: Annotated[
        int | None,
        typer.Option("--random", help="A random minimal DFA with exactly N states.", min=1),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --random.", min=0)] = 0,
    accepting_fraction: Annotated[
        float, typer.Option(help="Accepting fraction of --random.", min=0.0, max=1.0)
    ] = 0.5,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz source on stdout.")] = False,
    max_len: Annotated[
        int,
        typer.Option(
            help=f"Count accepted strings of lengths 0..N (at most {MAX_COUNT_LEN}).",
            min=0,
            max=MAX_COUNT_LEN,
        ),
    ] = 10,
    max_states: Annotated[
        int, typer.Option(help="Refuse DFAs with more states than this.", min=1)
    ] = 10_000,
) -> None:
    """Build the minimal DFA of a language: states, dead state, transitions, accepted counts.

    Give exactly one source: REGEX with --alphabet, an experiment .toml, --dfa TABLE.toml,
    --att FILE [--isymbols FILE], or --random N --alphabet ab [--seed S].

    Example:  fsmrun fsm '(a|b)*ab' --alphabet ab --dot | dot -Tpng -o dfa.png
    """
    from fsmrun.lang.options import LanguageOptions, dfa_from_options

    options = LanguageOptions(
        source, alphabet, dfa_file, att, isymbols, random, seed, accepting_fraction, max_states
    )
    dfa, label = dfa_from_options(options)
    if dot:
        sys.stdout.write(dfa.to_dot())
        return
    live = int(dfa.live.sum())
    outputs = "" if dfa.is_membership else f", {dfa.num_outputs} outputs"
    summary = Text(
        f"{label} over {''.join(dfa.alphabet)!r}: {dfa.num_states} states "
        f"(start {dfa.start}, {int(dfa.accepting.sum())} accepting, {live} live{outputs}), "
        f"dead state: {'none' if dfa.dead is None else dfa.dead}"
    )
    # Everything is built before the first line is printed: an error prints nothing else.
    tables = [
        transition_table(dfa),
        counts_table(dfa, max_len) if dfa.is_membership else output_counts_table(dfa, max_len),
    ]
    out = data_console()
    for part in (summary, *tables):
        out.print(part)


def experiments() -> None:
    """List the built-in experiments (name, language, alphabet, DFA states, description),
    then the built-in sweep suites.

    Any experiment name works as EXP in `fsmrun train` and `fsmrun audit-determinism`; any
    suite name as SPEC in `fsmrun sweep` (`fsmrun sweep --list` lists the suites alone).

    Example:  fsmrun experiments
    """
    from fsmrun.experiments import list_experiments, load_experiment
    from fsmrun.lang.build import build_dfa

    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("language")
    table.add_column("alphabet")
    table.add_column("DFA states", justify="right")
    table.add_column("description")
    for name in list_experiments():
        exp = load_experiment(name)
        dfa = build_dfa(exp.data)
        table.add_row(
            name,
            Text(exp.data.regex if exp.data.regex is not None else exp.data.source_label),
            Text("".join(dfa.alphabet)),
            str(dfa.num_states),
            Text(" ".join(exp.description.split())),
        )
    out = data_console()
    out.print(table)
    out.print(Text("suites (fsmrun sweep SUITE):"))
    out.print(suites_table())


def suites_table() -> Table:
    """The built-in sweep suites: name, cells, experiments, description (`fsmrun experiments`
    and `fsmrun sweep --list`)."""
    from fsmrun.sweeps.spec import list_suites, load_spec, spec_size

    table = Table()
    for column in ("suite", "cells", "experiments", "description"):
        table.add_column(column)
    for suite in list_suites():
        spec = load_spec(suite)
        table.add_row(
            suite,
            str(spec_size(spec)),
            Text(", ".join(spec.experiments)),
            Text(" ".join(spec.description.split())),
        )
    return table
