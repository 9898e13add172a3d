"""Figures of runs and sets of runs: `plot_run` draws one run into its `plots/` folder,
`plot_runs` compares many, `plot_sweep` a sweep's. matplotlib (and torch) load on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fsmrun.analysis.plots.outcome import DEFAULT_GROUP_BY, FORMATS, PlotOutcome, Skip, Skipped
from fsmrun.base.errors import UserError
from fsmrun.schemas.sweep import SweepRecord

CHECKPOINTS = ("best", "last")
RUN_FIGURES = ("learning_curves", "accuracy_by_length", "attention", "hidden_states", "automaton")
SET_FIGURES = ("accuracy_by_length", "ood_accuracy")
SWEEP_PLOTS_DIR = "plots"  # in the sweep's folder, beside sweep.json


def _check(fmt: str, checkpoint: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"unknown checkpoint {checkpoint!r}; choose best or last")


def _draw(report: PlotOutcome, name: str, draw: Callable[[], Path]) -> None:
    try:
        report.written.append(draw())
    except Skip as skip:
        report.skipped.append(Skipped(name, str(skip)))


def plot_run(
    folder: str | Path,
    *,
    fmt: str = "png",
    string_index: int = 0,
    capture_epoch: int | None = None,
    checkpoint: str = "best",
) -> PlotOutcome:
    """Draw every figure of one run into `<run>/plots/<figure>.<fmt>` (see RUN_FIGURES).

    Figures whose data is missing (no captures, no metrics yet, no Graphviz) are skipped and
    named in the report. A bad `string_index` or `capture_epoch` raises UserError before
    anything is written.
    """
    from fsmrun.analysis.plots import internals, run_figures
    from fsmrun.analysis.plots.files import RunFiles

    _check(fmt, checkpoint)
    run = RunFiles(folder)
    run.record()  # not a run folder: RunFolderError before anything is drawn
    capture, capture_skip = None, None
    try:
        capture = internals.load_capture(run, capture_epoch)
        if capture.attentions is not None:
            internals.check_string_index(capture, string_index)
    except Skip as skip:
        capture_skip = skip

    def needs_capture(draw: Callable[..., Path], **kwargs: object) -> Callable[[], Path]:
        def go() -> Path:
            if capture is None:
                raise capture_skip or Skip("no captures")
            return draw(run, capture, fmt, **kwargs)

        return go

    report = PlotOutcome()
    _draw(report, "learning_curves", lambda: run_figures.learning_curves(run, fmt))
    _draw(
        report,
        "accuracy_by_length",
        lambda: run_figures.length_accuracy(run, fmt, checkpoint),
    )
    _draw(report, "attention", needs_capture(internals.attention_maps, string_index=string_index))
    _draw(report, "hidden_states", needs_capture(internals.hidden_states))
    _draw(report, "automaton", lambda: run_figures.automaton(run, fmt))
    return report


def plot_runs(
    folders: Sequence[str | Path],
    out_dir: str | Path,
    *,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    fmt: str = "png",
    checkpoint: str = "best",
) -> PlotOutcome:
    """Draw the set figures (see SET_FIGURES) of `folders` into `out_dir`.

    Runs are grouped by the values of `group_by` (`experiment`, config fields such as `arch`
    or `seed`, or dotted paths such as `model.d_model`); with `experiment` among them, each
    experiment gets its own panel or bar cluster. Unfinished runs are skipped and named.
    """
    from fsmrun.analysis.plots import groups

    _check(fmt, checkpoint)
    if not folders:
        raise UserError("no runs to plot")
    if not group_by:
        raise UserError("group_by needs at least one key, e.g. experiment")
    points, skipped = groups.collect([Path(f) for f in folders], group_by, checkpoint)
    report = PlotOutcome(skipped=skipped)
    out = Path(out_dir)
    _draw(
        report, "accuracy_by_length", lambda: groups.accuracy_by_length(points, group_by, out, fmt)
    )
    _draw(report, "ood_accuracy", lambda: groups.ood_accuracy(points, group_by, out, fmt))
    return report


def plot_sweep(
    results_root: str | Path,
    ref: str,
    out_dir: str | Path | None = None,
    *,
    group_by: Sequence[str] | None = None,
    fmt: str = "png",
    checkpoint: str = "best",
) -> PlotOutcome:
    """Draw the set figures of the completed runs of sweep `ref` (id, unique prefix or name,
    as `fsmrun sweep status` takes it) into `out_dir` [default: `<sweep folder>/plots/`].

    Cells not completed are left out and counted in one Skipped entry; sweep.json is only
    read. `group_by` None: experiment and the override keys whose values differ between the
    sweep's cells (seed excepted), so each line or bar is one grid point over its seeds.
    """
    from fsmrun.sweeps import coordinator as sweep

    _check(fmt, checkpoint)
    path = sweep.find_sweep(Path(results_root), ref)
    record = sweep.read_record(path)
    folders, counts = sweep.completed_runs(Path(results_root), record)
    left = ", ".join(
        f"{n} {status.replace('todo', 'to do')}"
        for status, n in counts.items()
        if status != "done" and n
    )
    if not folders:
        raise UserError(
            f"sweep {record.sweep_id} has no completed runs yet ({left}); "
            f"`fsmrun sweep status {record.sweep_id}` shows its cells"
        )
    keys = list(group_by) if group_by is not None else sweep_group_by(record)
    out = Path(out_dir) if out_dir is not None else path.parent / SWEEP_PLOTS_DIR
    report = plot_runs(folders, out, group_by=keys, fmt=fmt, checkpoint=checkpoint)
    if len(folders) < len(record.cells):
        total = len(record.cells)
        cells = Skipped(f"{total - len(folders)} of {total} sweep cells", f"not completed ({left})")
        report.skipped.insert(0, cells)
    return report


def sweep_group_by(record: SweepRecord) -> list[str]:
    """`experiment` and the override keys whose values differ between cells, seed excepted."""
    keys = dict.fromkeys(k for cell in record.cells for k in cell.overrides if k != "seed")
    varying = [
        key for key in keys if len({repr(cell.overrides.get(key)) for cell in record.cells}) > 1
    ]
    return ["experiment", *varying]


__all__ = [
    "CHECKPOINTS",
    "DEFAULT_GROUP_BY",
    "FORMATS",
    "RUN_FIGURES",
    "SET_FIGURES",
    "SWEEP_PLOTS_DIR",
    "PlotOutcome",
    "Skipped",
    "plot_run",
    "plot_runs",
    "plot_sweep",
    "sweep_group_by",
]
