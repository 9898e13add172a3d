"""The commands that run a model: `fsmrun train` (a new versioned run folder), `resume`
(continue a stopped run exactly, or extend a finished one), `eval` (a checkpoint, overall and
by string length) and `audit-determinism` (train repeatedly, check the runs are identical).
Each imports torch inside the command, through the stage package it calls."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.base.overrides import apply_overrides, collect_overrides
from fsmrun.cli._common import console, data_console, echo_json, results_root
from fsmrun.cli._options import (
    DeviceOption,
    ExperimentArg,
    JsonOption,
    NoteOption,
    ProgressOption,
    ResultsDirOption,
    RunArg,
    SetOption,
    TagOption,
)
from fsmrun.cli._render import bins_table_fit, dropped_line, finish_run, split_table_fit
from fsmrun.experiments import load_experiment
from fsmrun.runs.labels import checked_labels, parse_tags
from fsmrun.runs.layout import resolve_run

if TYPE_CHECKING:
    from fsmrun.schemas.cli import AuditReport


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


class Checkpoint(str, Enum):
    best = "best"
    last = "last"


class Split(str, Enum):
    val = "val"
    test = "test"
    test_ood = "test_ood"


def eval_run(
    run: RunArg,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help="Which checkpoint: the best on validation, or the last.")
    ] = Checkpoint.best,
    split: Annotated[
        list[Split] | None,
        typer.Option(help="Split to evaluate (repeatable) [default: all].", show_default=False),
    ] = None,
    json_: JsonOption = False,
    device: DeviceOption = "auto",
    results_dir: ResultsDirOption = None,
) -> None:
    """Evaluate a run's checkpoint: accuracies beside their baselines, by string length.

    Example:  fsmrun eval regex_a-3f9c2a --checkpoint last --split test_ood
    """
    from fsmrun.train.evaluate import evaluate_run

    root = results_root(results_dir)
    report = evaluate_run(
        resolve_run(root, run),
        checkpoint=checkpoint.value,
        splits=[s.value for s in split] if split else None,
        device=device,
        results_root=root,
    )
    if json_:
        echo_json(report.model_dump_json(indent=2))
        return
    out = data_console()
    out.print(
        f"{report.run_id}  checkpoint {report.checkpoint} (step {report.step}, "
        f"epoch {report.epoch})",
        markup=False,
    )
    width = out.width
    title = "overall (accuracies beside majority-class baselines)"
    table, dropped = split_table_fit(title, report.splits, width)
    out.print(table)
    for name, metrics in report.splits.items():
        if metrics.bins:
            table, more = bins_table_fit(name, metrics, width)
            out.print(table)
            dropped += [c for c in more if c not in dropped]
    if (line := dropped_line(dropped, width)) is not None:
        out.print(line, markup=False)


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
