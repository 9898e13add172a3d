"""`fsmrun audit-determinism`: train an experiment repeatedly and check the runs are identical."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.base.overrides import apply_overrides, collect_overrides
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import (
    DeviceOption,
    ExperimentArg,
    JsonOption,
    ResultsDirOption,
    SetOption,
)
from fsmrun.experiments import load_experiment
from fsmrun.schemas.cli import AuditReport

_STYLE = {"identical": "green", "within_tolerance": "yellow", "different": "bold red"}


def checks_table(report: AuditReport) -> Table:
    table = Table(title=f"determinism audit of {report.experiment}", title_justify="left")
    for name in ("check", "compared", "result", "max abs diff", "detail"):
        table.add_column(name, justify="right" if name == "max abs diff" else "left")
    for c in report.checks:
        diff = "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.3g}"
        table.add_row(
            c.check, c.compared, Text(c.status, style=_STYLE[c.status]), diff, Text(c.detail)
        )
    return table


def audit_determinism(
    experiment: ExperimentArg,
    runs: Annotated[
        int, typer.Option(help="Independent training runs to compare (at least 2).", min=1)
    ] = 2,
    resume_check: Annotated[
        bool,
        typer.Option(help="Also stop a run mid-epoch, resume it, and compare it with run 1."),
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="Steps per run [default: whole epochs, at least 60 steps where the config "
            "trains that many].",
            show_default=False,
            min=1,
        ),
    ] = None,
    json_: JsonOption = False,
    device: DeviceOption = "auto",
    set_: SetOption = None,
    results_dir: ResultsDirOption = None,
) -> None:
    """Check that training repeats bit for bit: hashes, every logged loss, weights, metrics.

    Trains EXP --runs times (short, in a scratch folder: the results folder is untouched) and
    compares each run with the first. Exit 0 only when everything is identical (a stated
    tolerance applies on CUDA without --deterministic); the JSON report is written to
    <results>/audits/, and existing runs of the config are then marked audit-verified.

    Example:  fsmrun audit-determinism regex_a --runs 2 --resume-check
    """
    from fsmrun.analysis.audit import audit_and_record

    exp = apply_overrides(load_experiment(experiment), collect_overrides(set_ or [], {}))
    report, path = audit_and_record(
        exp,
        results_root(results_dir),
        runs=runs,
        resume_check=resume_check,
        max_steps=max_steps,
        device=device,
        on_run=lambda line: console.print(line, markup=False),
    )
    if json_:
        echo_json(report.model_dump_json(indent=2))
    else:
        data_console().print(checks_table(report))
    if report.tolerance is not None:
        console.print(
            f"tolerance {report.tolerance:g} (absolute): {report.tolerance_reason}", markup=False
        )
    console.print(f"report: {path}", markup=False, soft_wrap=True)
    failed = [c for c in report.checks if c.status == "different"]
    if failed:
        console.print(
            f"[bold red]FAILED[/]: {len(failed)} of {len(report.checks)} checks differ "
            f"({', '.join(sorted({c.check for c in failed}))})"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]passed[/]: all {len(report.checks)} checks agree; "
        f"{len(report.verified_runs)} existing run(s) marked audit-verified"
    )
