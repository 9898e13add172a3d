"""`fsmrun resume`: continue a stopped run exactly, or extend a finished one."""

from __future__ import annotations

from typing import Annotated

import typer

from fsmrun.cli._common import console, results_root
from fsmrun.cli._options import DeviceOption, ProgressOption, ResultsDirOption, RunArg
from fsmrun.cli._render import finish_run
from fsmrun.core.registry import resolve_run
from fsmrun.core.run_folder import RunFolder, effective_status


def resume(
    run: RunArg,
    epochs: Annotated[
        int | None,
        typer.Option(help="Raise the epoch limit (needed to extend a completed run)."),
    ] = None,
    device: DeviceOption = "auto",
    results_dir: ResultsDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Continue a run from its last checkpoint, bit for bit where it stopped.

    An interrupted or failed run picks up at the step it saved last (mid-epoch included);
    a completed run continues when --epochs raises its epoch limit. Resume on the device it
    trained on for exact results.

    Example:  fsmrun resume regex_a-3f9c2a --epochs 30
    """
    from fsmrun.core import loop
    from fsmrun.core.session import check_resume

    root = results_root(results_dir)
    folder = resolve_run(root, run)
    record, _ = check_resume(RunFolder(folder), epochs)  # fails early, before any set-up
    status = effective_status(record)
    console.print(f"resuming {record.run_id} ({status}) from {folder}", markup=False)
    result = loop.resume_run(
        folder, epochs=epochs, device=device, results_root=root, console=console, progress=progress
    )
    finish_run(result, root)
