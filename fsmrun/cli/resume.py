"""`fsmrun resume`: continue a stopped run exactly, or extend a finished one."""

from __future__ import annotations

from typing import Annotated

import typer

from fsmrun.cli._common import console, results_root
from fsmrun.cli._options import DeviceOption, ProgressOption, ResultsDirOption, RunArg
from fsmrun.cli._render import finish_run
from fsmrun.runs.layout import resolve_run


def resume(
    run: RunArg,
    epochs: Annotated[
        int | None,
        typer.Option(help="Raise the epoch limit (needed to extend a completed run)."),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(min=1, help="Extend a completed run with this early-stopping patience."),
    ] = None,
    early_stop: Annotated[
        bool,
        typer.Option(
            "--early-stop/--no-early-stop",
            help="--no-early-stop: extend a completed run without patience or threshold.",
        ),
    ] = True,
    device: DeviceOption = "auto",
    results_dir: ResultsDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Continue a run from its last checkpoint, bit for bit where it stopped.

    An interrupted or failed run picks up at the step it saved last (mid-epoch included).
    A completed run is never changed: --epochs (above its limit), --patience or
    --no-early-stop extend it into a new run (own config hash and version, naming its parent)
    that starts from its last checkpoint. Resume on the device it trained on for exact results.

    Example:  fsmrun resume regex_a-3f9c2a --epochs 30
    """
    from fsmrun.train import loop

    root = results_root(results_dir)
    folder = resolve_run(root, run)
    result = loop.resume_run(
        folder,
        epochs=epochs,
        patience=patience,
        early_stop=early_stop,
        device=device,
        results_root=root,
        console=console,
        progress=progress,
    )
    finish_run(result, root)
