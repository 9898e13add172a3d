"""`fsmrun train`: train one experiment into a new versioned run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fsmrun.cli._common import (
    EXIT_INTERRUPTED,
    CliError,
    DeviceOption,
    ResultsDirOption,
    console,
    results_root,
)
from fsmrun.cli._overrides import apply_overrides, collect_overrides
from fsmrun.cli._render import print_result
from fsmrun.core.datagen import load_or_generate_corpus
from fsmrun.core.env import resolve_device
from fsmrun.core.fsm import compile_regex
from fsmrun.core.loop import RunResult, train_one_experiment
from fsmrun.experiments import load_experiment
from fsmrun.schemas.config import ExperimentConfig

ExperimentArg = Annotated[
    str,
    typer.Argument(
        metavar="EXP",
        help="Built-in experiment name (see `fsmrun experiments`) or a path to a TOML file.",
        show_default=False,
    ),
]


def check_writable(root: Path) -> None:
    """The results folder exists (created if needed) and can be written."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(
            f"cannot create the results folder {root} ({err.strerror}); choose another with "
            "--results-dir or FSMRUN_RESULTS_DIR"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CliError(
            f"the results folder {root} is not writable; choose another with --results-dir "
            "or FSMRUN_RESULTS_DIR"
        )


def preflight(exp: ExperimentConfig, device: str, root: Path) -> None:
    """Fail on everything a user can get wrong before a run folder is claimed.

    Device, results folder, regex (and state cap) and corpus capacity; the corpus lands in
    the cache the training run then reads, so this costs no second generation.
    """
    resolve_device(device)
    dfa = compile_regex(exp.data.regex, exp.data.alphabet, max_states=exp.data.max_states)
    check_writable(root)
    load_or_generate_corpus(dfa, exp.data, exp.seed, root / ".cache" / "corpora")


def finish(result: RunResult, root: Path) -> None:
    """Print the result; interrupted runs exit 130 with the resume command, failed ones 1."""
    print_result(result)
    hint = "" if root == results_root(None) else f" --results-dir {root}"
    if result.status == "interrupted":
        console.print(
            f"interrupted at step {result.steps}; continue with: "
            f"fsmrun resume {result.run_id}{hint}",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "failed":
        raise typer.Exit(1)


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
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY.PATH=VALUE",
            help="Override any config value, e.g. --set model.d_model=32 (repeatable; values "
            "parse as JSON, else as text).",
            show_default=False,
        ),
    ] = None,
    results_dir: ResultsDirOption = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the newest run of this config instead of adding v<N+1>.")
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show the progress bar and epoch lines on stderr.")
    ] = True,
) -> None:
    """Train an experiment; prints the run id, its folder and a result summary.

    The run lands in <results>/<experiment>/<config_hash>/v<N>/. Flags and --set override
    the experiment's config (validated like the TOML file).

    Example:  fsmrun train regex_a --epochs 5 --set model.d_model=32 --device cpu
    """
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
    root = results_root(results_dir)
    preflight(exp, device, root)
    result = train_one_experiment(
        exp,
        device=device,
        results_root=root,
        overwrite=overwrite,
        console=console,
        progress=progress,
    )
    finish(result, root)
