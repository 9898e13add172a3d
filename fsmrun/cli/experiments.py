"""`fsmrun experiments`: the built-in experiments with their languages, then the built-in
sweep suites."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import data_console
from fsmrun.experiments import list_experiments, load_experiment


def experiments() -> None:
    """List the built-in experiments (name, language, alphabet, DFA states, description),
    then the built-in sweep suites.

    Any experiment name works as EXP in `fsmrun train` and `fsmrun audit-determinism`; any
    suite name as SPEC in `fsmrun sweep` (`fsmrun sweep --list` lists the suites alone).

    Example:  fsmrun experiments
    """
    from fsmrun.cli.sweep import suites_table
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
