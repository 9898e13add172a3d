"""`fsmrun plot`: figures of one run (into its plots/ folder), of a set of runs or a sweep.

matplotlib loads only when this command runs; paths of the files written go to stdout, one a
line, and a notice for each figure skipped for lack of data goes to stderr.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from fsmrun.analysis.plots.outcome import DEFAULT_GROUP_BY, PlotOutcome
from fsmrun.cli._common import console, results_root
from fsmrun.cli._options import ResultsDirOption


class Format(str, Enum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


class Checkpoint(str, Enum):
    best = "best"
    last = "last"


def _render(report: PlotOutcome) -> None:
    for skipped in report.skipped:
        console.print(skipped.notice(), markup=False)
    for path in report.written:
        typer.echo(str(path))
    console.print(f"{len(report.written)} figure(s) written", markup=False)


def plot(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN",
            help="Run ids, unique prefixes or run folders. One run: its own figures, written "
            "to its plots/ folder. Several: figures comparing them, written to --out. A "
            "single RUN that names no run but a sweep plots that sweep (as --sweep).",
            show_default=False,
        ),
    ] = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            "-e",
            metavar="EXP",
            help="Compare every run of this experiment (repeatable); adds to RUN...",
            show_default=False,
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Compare the completed runs of this sweep (name, id or id prefix, as `fsmrun "
            "sweep status` takes it); cells not completed are skipped.",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Comparison groups: comma-separated keys (experiment, a config field such as "
            "arch or seed, or a dotted path such as model.d_model); the runs of a group are "
            f"its seeds [default: {','.join(DEFAULT_GROUP_BY)}; for a sweep, experiment and "
            "the keys its cells vary].",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for comparison figures [default: <results-dir>/plots; for a sweep, "
            "<results-dir>/sweeps/<id>/plots].",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Image format.")] = Format.png,
    string_index: Annotated[
        int, typer.Option(help="Captured string whose attention maps are drawn (0-based).")
    ] = 0,
    capture_epoch: Annotated[
        int | None,
        typer.Option(help="Capture to draw [default: the last one].", show_default=False),
    ] = None,
    checkpoint: Annotated[
        Checkpoint, typer.Option(help="Checkpoint whose metrics give the accuracy figures.")
    ] = Checkpoint.best,
    results_dir: ResultsDirOption = None,
) -> None:
    """Draw figures: learning curves, accuracy by length, attention maps, hidden states (PCA
    by DFA state) and the automaton of one run; accuracy by length and OOD accuracy of many.

    \b
    Examples:  fsmrun plot regex_a-3f9c2a --format pdf
               fsmrun plot -e parity -e even_pairs --by experiment,arch --out figures/
               fsmrun plot --sweep tomita        # into <results-dir>/sweeps/<id>/plots/
    """
    from fsmrun.analysis.plots.targets import draw_target, plot_target

    root = results_root(results_dir)
    keys = [k.strip() for k in by.split(",") if k.strip()] if by is not None else None
    target = plot_target(root, runs or [], experiment or [], sweep, out)
    report = draw_target(
        root,
        target,
        out=out,
        group_by=keys,
        fmt=fmt.value,
        string_index=string_index,
        capture_epoch=capture_epoch,
        checkpoint=checkpoint.value,
    )
    _render(report)
