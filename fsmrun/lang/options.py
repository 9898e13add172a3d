"""The language a set of `fsmrun fsm` options names: exactly one source (a regex with its
alphabet, an experiment TOML, a DFA table file, an AT&T file, a random DFA), each checked as
an experiment's [data] table and built through `build_dfa`; and the string counts it shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.experiments import load_experiment, parse_toml
from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import DFA
from fsmrun.lang.sources import SourceError
from fsmrun.schemas.config import DataConfig


@dataclass(frozen=True)
class LanguageOptions:
    """The language options of `fsmrun fsm`, as given (None: not given)."""

    source: str | None = None  # a regex, or an experiment .toml
    alphabet: str | None = None
    dfa_file: Path | None = None
    att: Path | None = None
    isymbols: Path | None = None
    random: int | None = None  # states of a random minimal DFA
    seed: int = 0
    accepting_fraction: float = 0.5
    max_states: int = 10_000


def dfa_from_options(options: LanguageOptions) -> tuple[DFA, str]:
    """The minimal DFA of the one source given and a short label naming it. UserError when
    none or several are given, or a source lacks what it needs (a regex its alphabet)."""
    o = options
    given = [
        name
        for name, value in (("SOURCE", o.source), ("--dfa", o.dfa_file), ("--att", o.att),
                            ("--random", o.random))
        if value is not None
    ]  # fmt: skip
    if len(given) != 1:
        raise UserError(
            "give exactly one language source: REGEX (or an experiment .toml), --dfa, --att or "
            f"--random (got {', '.join(given) if given else 'none'})"
        )
    if o.isymbols is not None and o.att is None:
        raise UserError("--isymbols only goes with --att")
    if o.source is not None and o.source.endswith(".toml"):
        exp = load_experiment(o.source)
        return build_dfa(exp.data), f"experiment {exp.name!r}"
    if o.source is not None:
        if o.alphabet is None:
            raise UserError("a regex needs --alphabet (e.g. --alphabet ab)")
        data = _data_config("regex", regex=o.source, alphabet=o.alphabet, max_states=o.max_states)
        return build_dfa(data), f"regex {o.source!r}"
    if o.dfa_file is not None:
        return _table_dfa(o.dfa_file, o.alphabet, o.max_states), f"table {str(o.dfa_file)!r}"
    if o.att is not None:
        files = {"path": str(o.att), "isymbols": None if o.isymbols is None else str(o.isymbols)}
        data = _data_config("AT&T file", att=files, alphabet=o.alphabet, max_states=o.max_states)
        return build_dfa(data), f"AT&T file {str(o.att)!r}"
    if o.alphabet is None:
        raise UserError("--random needs --alphabet (e.g. --alphabet ab)")
    spec = {"num_states": o.random, "accepting_fraction": o.accepting_fraction, "seed": o.seed}
    data = _data_config("--random", random_dfa=spec, alphabet=o.alphabet, max_states=o.max_states)
    return build_dfa(data), f"random DFA (seed {o.seed})"


def _data_config(what: str, **fields: Any) -> DataConfig:
    """A [data] table holding one language source; UserError naming the bad field."""
    try:
        return DataConfig(**fields)
    except ValidationError as err:  # name the option the user typed, not the [data] field
        field = str(err.errors()[0]["loc"][0]) if err.errors() else ""
        option = {"alphabet": "--alphabet", "max_states": "--max-states"}.get(field, what)
        raise UserError(describe_validation_error(err, f"invalid {option}")) from None


def _table_dfa(path: Path, alphabet: str | None, max_states: int) -> DFA:
    """The DFA of a TOML file holding the fields of a [data.dfa] table at its top level."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot read: {err}") from None
    doc = parse_toml(text, str(path))
    try:
        data = DataConfig(dfa=doc, alphabet=alphabet, max_states=max_states)
    except ValidationError as err:  # the table's fields sit at the file's top level
        what = f"{path}: invalid DFA table"
        raise SourceError(describe_validation_error(err, what, strip_loc=1)) from None
    try:
        return build_dfa(data)
    except SourceError as err:  # name the file; its fields sit at the top level here
        raise SourceError(f"{path}: {str(err).replace('data.dfa.', '')}") from None


def counts_by_length(dfa: DFA, max_len: int) -> list[list[int]]:
    """`counts[n][q]`: strings of length n leading from the start to state q (exact ints,
    so counts beyond 2**63 stay exact)."""
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
