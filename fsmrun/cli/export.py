"""`fsmrun export tensorboard|mlflow`: finished runs into the trackers researchers use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fsmrun.cli._common import FsmrunGroup, console, results_root
from fsmrun.cli._options import ResultsDirOption

app = typer.Typer(
    cls=FsmrunGroup,
    help="Export runs to TensorBoard event files or an MLflow tracking store (optional "
    "extras: pip install 'fsmrun[tensorboard]' or 'fsmrun[mlflow]'). Nothing is sent anywhere "
    "while training; exporting again updates, never duplicates.",
    no_args_is_help=True,
)

RunsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="[RUN]...", help="Run ids, unique prefixes or run folders.",
                   show_default=False),
]  # fmt: skip
SweepOption = Annotated[
    str | None,
    typer.Option("--sweep", metavar="NAME", help="Every run of this sweep.", show_default=False),
]


@app.command("tensorboard")
def tensorboard(
    runs: RunsArg = None,
    sweep: SweepOption = None,
    out: Annotated[
        Path, typer.Option(help="Folder of the event files (one sub-folder a run).")
    ] = Path("tensorboard"),
    results_dir: ResultsDirOption = None,
) -> None:
    """Write TensorBoard event files: losses, learning rate, gradient norm and validation
    metrics against the step; the config and tags as hparams with the final accuracies.

    Example:  fsmrun export tensorboard --sweep tomita --out tb && tensorboard --logdir tb
    """
    from fsmrun.analysis.export import export_tensorboard, select_runs

    root = results_root(results_dir)
    written = export_tensorboard(select_runs(root, runs or [], sweep), out)
    for folder in written:
        console.print(f"wrote {folder}", markup=False)
    console.print(f"open them with: tensorboard --logdir {out}", markup=False)


@app.command("mlflow")
def mlflow(
    runs: RunsArg = None,
    sweep: SweepOption = None,
    tracking_uri: Annotated[
        str, typer.Option(help="MLflow tracking URI [default: sqlite:///mlflow.db here].")
    ] = "sqlite:///mlflow.db",
    results_dir: ResultsDirOption = None,
) -> None:
    """Log runs to MLflow once each: params (the config), metrics with steps, tags
    (experiment, arch, seed, run id, labels), metrics.json and plots as artifacts.

    Example:  fsmrun export mlflow regex_a-3f9c2a && mlflow ui --backend-store-uri sqlite:///mlflow.db
    """
    from fsmrun.analysis.export import export_mlflow, select_runs

    root = results_root(results_dir)
    ids = export_mlflow(select_runs(root, runs or [], sweep), tracking_uri)
    console.print(f"{len(ids)} run(s) in {tracking_uri}", markup=False)
    console.print(f"open them with: mlflow ui --backend-store-uri {tracking_uri}", markup=False)
