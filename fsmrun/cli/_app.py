"""The Typer app: every command under its name. Commands import heavy stage-package machinery
inside the command function, so help, ls, show, experiments, fsm and plot (of a run without
captures), report, diff and `sweep status` never load torch."""

from __future__ import annotations

import typer

from fsmrun.cli import (
    analyze,
    audit,
    diff,
    eval,
    experiments,
    export,
    fsm,
    ls,
    plot,
    report,
    resume,
    show,
    sweep,
    tag,
    train,
)
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
app.command("train")(train.train)
app.command("resume")(resume.resume)
app.command("eval")(eval.eval_run)
app.command("audit-determinism")(audit.audit_determinism)
app.command("ls")(ls.ls)
app.command("show")(show.show)
app.command("experiments")(experiments.experiments)
app.command("fsm")(fsm.fsm)
app.command("plot")(plot.plot)
app.add_typer(sweep.app, name="sweep")
app.command("report")(report.report)
app.command("diff")(diff.diff)
app.command("analyze")(analyze.analyze)
app.command("tag")(tag.tag)
app.add_typer(export.app, name="export")
