"""The `fsmrun` command line: one Typer app, one module per command.

Commands parse their options, build the config, call one `fsmrun.core` function and render
the result (data on stdout, status on stderr). `main()` is the console-script entry point.
"""

from __future__ import annotations

import typer

from fsmrun.cli import audit, diff, eval, experiments, fsm, ls, report, resume, show, sweep, train
from fsmrun.cli._common import FsmrunGroup

app = typer.Typer(
    cls=FsmrunGroup,
    name="fsmrun",
    help="Train small sequence models on regular languages; every run reproducible, "
    "resumable and easy to find again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Modules stay bound under their names (tests patch them); each holds its command function.
app.command("train")(train.train)
app.command("resume")(resume.resume)
app.command("eval")(eval.eval_run)
app.command("audit-determinism")(audit.audit_determinism)
app.command("ls")(ls.ls)
app.command("show")(show.show)
app.command("experiments")(experiments.experiments)
app.command("fsm")(fsm.fsm)
app.add_typer(sweep.app, name="sweep")
app.command("report")(report.report)
app.command("diff")(diff.diff)


def main() -> None:
    """Console-script entry point (`fsmrun = "fsmrun.cli:main"`)."""
    app(prog_name="fsmrun")


__all__ = ["app", "main"]
