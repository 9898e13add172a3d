"""`fsmrun fsm`: build the minimal DFA of any language source and show it (or print Graphviz)."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.base.errors import UserError
from fsmrun.cli._common import data_console

if TYPE_CHECKING:
    from fsmrun.lang.fsm import DFA
    from fsmrun.schemas.config import DataConfig

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


def _counts_by_length(dfa: DFA, max_len: int) -> list[list[int]]:
    """`counts[n][q]`: strings of length n leading from the start to state q (exact ints)."""
    rows = dfa.transitions.tolist()
    ways = [0] * dfa.num_states
    ways[dfa.start] = 1
    counts = [ways]
    for _ in range(max_len):
        nxt = [0] * dfa.num_states
        for q, w in enumerate(ways):
            if w:
                for t in rows[q]:
                    nxt[t] += w
        ways = nxt
        counts.append(ways)
    return counts


def counts_table(dfa: DFA, max_len: int) -> Table:
    """Accepted strings of each length 0..max_len beside all strings of that length."""
    table = Table(title="accepted strings by length", title_justify="left")
    table.add_column("length", justify="right")
    table.add_column("accepted", justify="right")
    table.add_column("of", justify="right")
    table.add_column("fraction", justify="right")
    k = len(dfa.alphabet)
    accepting = [q for q in range(dfa.num_states) if dfa.accepting[q]]
    for n, ways in enumerate(_counts_by_length(dfa, max_len)):
        accepted = sum(ways[q] for q in accepting)
        table.add_row(str(n), _count(accepted), _count(k**n), f"{accepted / k**n:.4f}")
    return table


def output_counts_table(dfa: DFA, max_len: int) -> Table:
    """Strings of each length 0..max_len by the output class of the state they end in."""
    table = Table(title="strings by length and output", title_justify="left")
    table.add_column("length", justify="right")
    for name in dfa.output_names:
        table.add_column(Text(name), justify="right")
    outputs = [int(o) for o in dfa.outputs]
    for n, ways in enumerate(_counts_by_length(dfa, max_len)):
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
    given = [
        name
        for name, value in (("SOURCE", source), ("--dfa", dfa_file), ("--att", att),
                            ("--random", random))
        if value is not None
    ]  # fmt: skip
    if len(given) != 1:
        raise UserError(
            "give exactly one language source: REGEX (or an experiment .toml), --dfa, --att or "
            f"--random (got {', '.join(given) if given else 'none'})"
        )
    if isymbols is not None and att is None:
        raise UserError("--isymbols only goes with --att")
    dfa, label = _build(source, alphabet, dfa_file, att, isymbols, random, seed,
                        accepting_fraction, max_states)  # fmt: skip
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


def _build(
    source: str | None,
    alphabet: str | None,
    dfa_file: Path | None,
    att: Path | None,
    isymbols: Path | None,
    random: int | None,
    seed: int,
    accepting_fraction: float,
    max_states: int,
) -> tuple[DFA, str]:
    """The DFA of the one given source and a short label for the summary line. Every source
    goes through the checks of an experiment's [data] table and through `build_dfa`."""
    # numpy and the compiler load here, not at start-up (`fsmrun --help` stays light).
    from fsmrun.lang.build import build_dfa

    if source is not None and source.endswith(".toml"):
        from fsmrun.experiments import load_experiment

        exp = load_experiment(source)
        return build_dfa(exp.data), f"experiment {exp.name!r}"
    if source is not None:
        if alphabet is None:
            raise UserError("a regex needs --alphabet (e.g. --alphabet ab)")
        data = _data_config("regex", regex=source, alphabet=alphabet, max_states=max_states)
        return build_dfa(data), f"regex {source!r}"
    if dfa_file is not None:
        return _table_dfa(dfa_file, alphabet, max_states), f"table {str(dfa_file)!r}"
    if att is not None:
        files = {"path": str(att), "isymbols": None if isymbols is None else str(isymbols)}
        data = _data_config("AT&T file", att=files, alphabet=alphabet, max_states=max_states)
        return build_dfa(data), f"AT&T file {str(att)!r}"
    if alphabet is None:
        raise UserError("--random needs --alphabet (e.g. --alphabet ab)")
    spec = {"num_states": random, "accepting_fraction": accepting_fraction, "seed": seed}
    data = _data_config("--random", random_dfa=spec, alphabet=alphabet, max_states=max_states)
    return build_dfa(data), f"random DFA (seed {seed})"


def _data_config(what: str, **fields: Any) -> DataConfig:
    """A [data] table holding one language source; UserError naming the bad field."""
    from pydantic import ValidationError

    from fsmrun.base.errors import describe_validation_error
    from fsmrun.schemas.config import DataConfig

    try:
        return DataConfig(**fields)
    except ValidationError as err:  # name the option the user typed, not the [data] field
        field = str(err.errors()[0]["loc"][0]) if err.errors() else ""
        option = {"alphabet": "--alphabet", "max_states": "--max-states"}.get(field, what)
        raise UserError(describe_validation_error(err, f"invalid {option}")) from None


def _table_dfa(path: Path, alphabet: str | None, max_states: int) -> DFA:
    """The DFA of a TOML file holding the fields of a [data.dfa] table at its top level."""
    from pydantic import ValidationError

    from fsmrun.experiments import _parse_toml
    from fsmrun.lang.build import build_dfa
    from fsmrun.lang.sources import SourceError
    from fsmrun.schemas.config import DataConfig

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot read: {err}") from None
    doc = _parse_toml(text, str(path))
    try:
        data = DataConfig(dfa=doc, alphabet=alphabet, max_states=max_states)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:] if '[' not in str(p)) or '(top level)'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        raise SourceError(f"{path}: invalid DFA table: {problems}") from None
    try:
        return build_dfa(data)
    except SourceError as err:  # name the file; its fields sit at the top level here
        raise SourceError(f"{path}: {str(err).replace('data.dfa.', '')}") from None
