"""`fsmrun train`: train one experiment into a new versioned run folder."""

from __future__ import annotations

from typing import Annotated

import typer

from fsmrun.base.overrides import apply_overrides, collect_overrides
from fsmrun.cli._common import console, results_root
from fsmrun.cli._options import (
    DeviceOption,
    ExperimentArg,
    NoteOption,
    ProgressOption,
    ResultsDirOption,
    SetOption,
    TagOption,
)
from fsmrun.cli._render import finish_run
from fsmrun.experiments import load_experiment
from fsmrun.runs.labels import checked_labels, parse_tags


def train(
    experiment: ExperimentArg,
    device: DeviceOption = "auto",
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", help="Mixed precision [default: from the config].", show_default=False
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Strings per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Epochs without improvement before stopping.")
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--no-deterministic",
            help="Deterministic kernels (CUDA: slower, exact repeats) [default: from the config].",
            show_default=False,
        ),
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(help="Also save last.pt every N steps (always at epoch end).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="The one seed of every random stream.")] = None,
    set_: SetOption = None,
    results_dir: ResultsDirOption = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the newest run of this config instead of adding v<N+1>.")
    ] = False,
    progress: ProgressOption = True,
    tag: TagOption = None,
    note: NoteOption = None,
) -> None:
    """Train an experiment; prints the run id, its folder and a result summary.

    The run lands in <results>/<experiment>/<config_hash>/v<N>/. Flags and --set override
    the experiment's config (validated like the TOML file).

    Example:  fsmrun train regex_a --epochs 5 --set model.d_model=32 --device cpu
    """
    from fsmrun.train import loop

    exp = load_experiment(experiment)
    flags = {
        "train.amp": amp,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "train.patience": patience,
        "train.deterministic": deterministic,
        "train.save_every": save_every,
        "seed": seed,
    }
    exp = apply_overrides(exp, collect_overrides(set_ or [], flags))
    labels = checked_labels(parse_tags(tag or []), note or "")
    root = results_root(results_dir)
    result = loop.train_one_experiment(
        exp,
        device=device,
        results_root=root,
        overwrite=overwrite,
        console=console,
        progress=progress,
        labels=labels,
    )
    finish_run(result, root)
