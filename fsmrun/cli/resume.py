"""`fsmrun resume`: continue a stopped run exactly, or extend a finished one."""

from __future__ import annotations

from typing import Annotated

import typer

from fsmrun.cli._common import CliError, DeviceOption, ResultsDirOption, console, results_root
from fsmrun.cli.train import finish
from fsmrun.core.loop import resume_run
from fsmrun.core.registry import effective_status, read_config, read_run_record, resolve_run

RunArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN", help="Run id, a unique prefix of one, or a run folder.", show_default=False
    ),
]


def resume(
    run: RunArg,
    epochs: Annotated[
        int | None,
        typer.Option(help="Raise the epoch limit (needed to extend a completed run)."),
    ] = None,
    device: DeviceOption = "auto",
    results_dir: ResultsDirOption = None,
    progress: Annotated[
        bool, typer.Option(help="Show the progress bar and epoch lines on stderr.")
    ] = True,
) -> None:
    """Continue a run from its last checkpoint, bit for bit where it stopped.

    An interrupted or failed run picks up at the step it saved last (mid-epoch included);
    a completed run continues when --epochs raises its epoch limit. Resume on the device it
    trained on for exact results.

    Example:  fsmrun resume regex_a-3f9c2a --epochs 30
    """
    root = results_root(results_dir)
    folder = resolve_run(root, run)
    record = read_run_record(folder)
    status = effective_status(record)
    config = read_config(folder)
    if config is None:
        raise CliError(f"{record.run_id} has no config.json: it died during set-up; train anew")
    if status == "running":
        raise CliError(
            f"{record.run_id} is still running (pid {record.pid} on {record.hostname}); "
            "stop it first"
        )
    if epochs is not None and epochs < config.train.epochs:
        raise CliError(
            f"--epochs {epochs} is below the run's epoch limit ({config.train.epochs}); "
            "resume can only extend a run"
        )
    if status == "completed" and (epochs is None or epochs == config.train.epochs):
        raise CliError(
            f"{record.run_id} is completed ({config.train.epochs} epochs); pass --epochs N with "
            f"N > {config.train.epochs} to extend it"
        )
    console.print(f"resuming {record.run_id} ({status}) from {folder}", markup=False)
    result = resume_run(folder, epochs=epochs, device=device, console=console, progress=progress)
    finish(result, root)
