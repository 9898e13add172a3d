"""What `fsmrun plot` was asked to draw: one run, a set of runs (ids, prefixes, folders and
every run of some experiments) or a sweep; each decision made here, so the command only parses
and renders. No matplotlib here: the figures load in the package on first draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fsmrun.analysis.plots.outcome import DEFAULT_GROUP_BY, PlotOutcome
from fsmrun.base.errors import UserError
from fsmrun.runs.layout import AmbiguousRun, RunNotFound, iter_run_folders, resolve_run
from fsmrun.sweeps.coordinator import find_sweep
from fsmrun.sweeps.spec import SweepError

SET_PLOTS_DIR = "plots"  # under the results folder, beside the experiments (not in a run)


@dataclass(frozen=True)
class PlotTarget:
    """One run (`folders` holds it), several runs, or a sweep (`sweep` names it)."""

    kind: str  # "run", "runs" or "sweep"
    folders: list[Path] = field(default_factory=list)
    sweep: str | None = None


def plot_target(
    root: Path,
    refs: list[str],
    experiments: list[str],
    sweep: str | None = None,
    out: Path | None = None,
) -> PlotTarget:
    """The target named by run refs (ids, prefixes, folders), `--experiment` names and
    `--sweep`: a sweep when `--sweep` is given or a single ref names a sweep and no run; one
    run when one ref (and no experiment) names one; runs otherwise, each once. UserError for
    nothing, a mix with --sweep, an experiment without runs, or --out with one run."""
    if sweep is not None and (refs or experiments):
        raise UserError("--sweep plots one sweep's runs; give it without RUN or --experiment")
    if sweep is None and len(refs) == 1 and not experiments:
        sweep = _sweep_named(root, refs[0])
    if sweep is not None:
        return PlotTarget("sweep", sweep=sweep)
    if not refs and not experiments:
        raise UserError(
            "give a run (id, prefix or folder), several runs, --experiment EXP or --sweep NAME"
        )
    folders = [resolve_run(root, ref) for ref in refs]
    for name in experiments:
        found = list(iter_run_folders(root, name))
        if not found:
            raise UserError(f"no runs of experiment {name!r} under {root} (`fsmrun ls` lists runs)")
        folders += found
    folders = list(dict.fromkeys(f.resolve() for f in folders))  # each run once
    if len(folders) == 1 and not experiments:
        if out is not None:
            raise UserError(
                "--out is for figures comparing several runs; one run's figures go to its "
                "plots/ folder (give more runs or --experiment to compare)"
            )
        return PlotTarget("run", folders)
    return PlotTarget("runs", folders)


def draw_target(
    root: Path,
    target: PlotTarget,
    *,
    out: Path | None = None,
    group_by: list[str] | None = None,
    fmt: str = "png",
    string_index: int = 0,
    capture_epoch: int | None = None,
    checkpoint: str = "best",
) -> PlotOutcome:
    """Draw `target`'s figures: a run's into its plots/ folder, a set's into `out` (default
    `<root>/plots`), a sweep's into its folder (or `out`)."""
    from fsmrun.analysis import plots  # matplotlib loads when a figure is drawn

    if target.kind == "sweep":
        assert target.sweep is not None
        return plots.plot_sweep(
            root, target.sweep, out, group_by=group_by, fmt=fmt, checkpoint=checkpoint
        )
    if target.kind == "run":
        return plots.plot_run(
            target.folders[0],
            fmt=fmt,
            string_index=string_index,
            capture_epoch=capture_epoch,
            checkpoint=checkpoint,
        )
    return plots.plot_runs(
        target.folders,
        out if out is not None else root / SET_PLOTS_DIR,
        group_by=group_by if group_by is not None else DEFAULT_GROUP_BY,
        fmt=fmt,
        checkpoint=checkpoint,
    )


def _sweep_named(root: Path, ref: str) -> str | None:
    """`ref` itself when it names a sweep and no run; None when it names a run or nothing
    (the run lookup then reports); UserError when it could mean either."""
    try:
        find_sweep(root, ref)
    except SweepError:
        return None
    try:
        resolve_run(root, ref)
    except RunNotFound:
        return ref
    except AmbiguousRun as err:
        runs = f"is a prefix of {len(err.candidates)} runs"
    else:
        runs = "names a run"
    raise UserError(
        f"{ref!r} names a sweep and {runs}; write --sweep {ref} for the sweep, or more of "
        "the run id"
    )
