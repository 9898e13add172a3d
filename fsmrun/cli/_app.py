"""The Typer app and its table of commands: each command's name, the module and function that
implement it, and its one-line summary.

A command's module is imported only when that command runs or shows its own help: `fsmrun
--help` lists every command from the table alone, and `fsmrun ls` imports `ls.py` and nothing
of `train.py`. So a light command pays the start-up of what it uses, not of every command.
(Inside a module, the heavy stage-package machinery is imported inside the command function
too: help, ls, show, experiments, fsm, plot of a run without captures, report, diff and `sweep
status` never load torch.)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import typer

from fsmrun.cli._common import FsmrunGroup, UsageError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.utils import make_default_short_help
except ImportError:  # pragma: no cover - older typer on click
    from click.utils import make_default_short_help  # type: ignore[no-redef]


@dataclass(frozen=True)
class Entry:
    """Where a command lives, and its summary for `fsmrun --help` (the first sentence of the
    command's own help; a test holds the two equal)."""

    module: str
    attribute: str  # a command function, or a Typer app for a command with subcommands
    summary: str


# In the order `fsmrun --help` lists them. Modules group the commands a newcomer looks for
# together: train.py runs models, runs.py looks at one or two runs, languages.py the languages.
COMMANDS: dict[str, Entry] = {
    "train": Entry(
        "fsmrun.cli.train",
        "train",
        "Train an experiment; prints the run id, its folder and a result summary.",
    ),
    "resume": Entry(
        "fsmrun.cli.train",
        "resume",
        "Continue a run from its last checkpoint, bit for bit where it stopped.",
    ),
    "eval": Entry(
        "fsmrun.cli.train",
        "eval_run",
        "Evaluate a run's checkpoint: accuracies beside their baselines, by string length.",
    ),
    "audit-determinism": Entry(
        "fsmrun.cli.train",
        "audit_determinism",
        "Check that training repeats bit for bit: hashes, every logged loss, weights, metrics.",
    ),
    "ls": Entry(
        "fsmrun.cli.ls",
        "ls",
        "List runs, newest first: id, architecture, seed, status, steps, test accuracies.",
    ),
    "show": Entry(
        "fsmrun.cli.runs",
        "show",
        "Show one run: its record, config, environment and final metrics.",
    ),
    "experiments": Entry(
        "fsmrun.cli.languages",
        "experiments",
        "List the built-in experiments (name, language, alphabet, DFA states, description), "
        "then the built-in sweep suites.",
    ),
    "fsm": Entry(
        "fsmrun.cli.languages",
        "fsm",
        "Build the minimal DFA of a language: states, dead state, transitions, accepted counts.",
    ),
    "plot": Entry(
        "fsmrun.cli.plot",
        "plot",
        "Draw figures: learning curves, accuracy by length, attention maps, hidden states (PCA "
        "by DFA state) and the automaton of one run; accuracy by length and OOD accuracy of "
        "many.",
    ),
    "report": Entry(
        "fsmrun.cli.report",
        "report",
        "Aggregate completed runs over seeds: n, mean (or --agg), std, min, max beside baselines.",
    ),
    "diff": Entry(
        "fsmrun.cli.runs",
        "diff",
        "Show the config fields that differ between two runs.",
    ),
    "analyze": Entry(
        "fsmrun.cli.analyze",
        "analyze",
        "Extract an automaton from each run's model (AALpy KV), compare it exactly with the "
        "run's minimal DFA, and probe every layer for the DFA state beside a control task.",
    ),
    "tag": Entry(
        "fsmrun.cli.runs",
        "tag",
        "Label a run: tags (key=value) and a free-text note, shown by `show`, filtered by "
        "`ls --tag`, grouped by `report --by tag.KEY`, exported to TensorBoard and MLflow.",
    ),
    "sweep": Entry(
        "fsmrun.cli.sweep",
        "app",
        "Run a grid of runs (`fsmrun sweep [run] ...`) or show its progress (`fsmrun sweep "
        "status ...`).",
    ),
    "export": Entry(
        "fsmrun.cli.export",
        "app",
        "Export runs to TensorBoard event files or an MLflow tracking store (optional extras: "
        "pip install 'fsmrun[tensorboard]' or 'fsmrun[mlflow]').",
    ),
}


def load_command(name: str) -> Any:
    """The Click command of `name`, built from its module exactly as if it had been registered
    on the app (`app.command(name)` / `app.add_typer(sub_app, name=name)`)."""
    entry = COMMANDS[name]
    target = getattr(import_module(entry.module), entry.attribute)
    holder = typer.Typer(add_completion=False, rich_markup_mode=None)
    holder.callback()(_no_options)  # a group, so that the command keeps its name
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


def _no_options() -> None:
    """The group's callback: no options of its own."""


class LazyCommandGroup(FsmrunGroup):
    """FsmrunGroup whose commands come from COMMANDS, each imported on first use."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.suggest_commands = False  # resolve_command suggests from the whole table

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list of `fsmrun --help`, from the table's summaries (no import)."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(e.summary, limit)) for name, e in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as err:  # an unknown command: suggest the close names
            close = difflib.get_close_matches(args[0], list(COMMANDS)) if args else []
            if close:
                shown = ", ".join(repr(name) for name in close)
                err.message = f"{err.message.rstrip('.')}. Did you mean {shown}?"
            raise


app = typer.Typer(
    cls=LazyCommandGroup,
    name="fsmrun",
    help="Train small sequence models on regular languages; every run reproducible, "
    "resumable and easy to find again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(_no_options)  # a group with no commands registered up front
