"""`fsmrun eval`: evaluate a checkpoint of a run, overall and by string length."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from fsmrun.cli._common import data_console, echo_json
from fsmrun.cli._common import results_root as resolve_root
from fsmrun.cli._options import DeviceOption, JsonOption, ResultsDirOption, RunArg
from fsmrun.cli._render import bins_table_fit, dropped_line, split_table_fit
from fsmrun.runs.layout import resolve_run


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

    root = resolve_root(results_dir)
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
