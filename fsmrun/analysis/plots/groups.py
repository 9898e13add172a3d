"""Figures of a set of runs: accuracy against length per group (spread over seeds as a band),
and OOD accuracy per experiment and group as bars, as Delétang et al. (2023) present results.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fsmrun.analysis.plots import style
from fsmrun.analysis.plots.files import RunFiles
from fsmrun.analysis.plots.outcome import Skip, Skipped
from fsmrun.analysis.plots.run_figures import ACCURACY_LABEL, LENGTH_LABEL, shade_length_ranges
from fsmrun.base.errors import UserError
from fsmrun.schemas.config import DataConfig, ExperimentConfig
from fsmrun.schemas.records import CheckpointEval

FACET_SIZE_IN = (style.COLUMN_IN, 2.4)
FACET_COLUMNS = 3
BARS_HEIGHT_IN = 2.6
_SECTIONS = ("data", "model", "train")


@dataclass(frozen=True)
class RunPoint:
    """What the set figures need of one finished run."""

    run_id: str
    experiment: str
    group: tuple[str, ...]  # values of the group-by keys other than "experiment"
    data: DataConfig
    evaluation: CheckpointEval
    status: str = "completed"  # a failed or running run is named in the figure's title


def group_value(config: ExperimentConfig, key: str) -> str:
    """The value of a group-by key: `experiment`, a config field (`arch`, `seed`) or a dotted
    path (`model.d_model`); UserError naming the fix for an unknown or ambiguous key."""
    if key == "experiment":
        return config.name
    doc = config.model_dump()
    if "." in key:
        value: object = doc
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise UserError(f"unknown group-by key {key!r}: no such config field")
            value = value[part]
        return str(value)
    if key in doc and key not in _SECTIONS:
        return str(doc[key])
    owners = [s for s in _SECTIONS if key in doc[s]]
    if len(owners) > 1:
        choices = " or ".join(f"{s}.{key}" for s in owners)
        raise UserError(f"group-by key {key!r} is ambiguous; write {choices}")
    if not owners:
        raise UserError(
            f"unknown group-by key {key!r}; use experiment, a config field (arch, "
            "pos_encoding, seed, d_model, ...) or a dotted path such as model.n_layers"
        )
    return str(doc[owners[0]][key])


def collect(
    folders: Sequence[Path], group_by: Sequence[str], checkpoint: str
) -> tuple[list[RunPoint], list[Skipped]]:
    """Load the finished runs among `folders`; unfinished ones come back as Skipped."""
    points, skipped = [], []
    for folder in folders:
        run = RunFiles(folder)
        run_id = run.record().run_id
        metrics, config = run.metrics(), run.config()
        if metrics is None or config is None:
            skipped.append(Skipped(f"run {run_id}", "no metrics.json (not finished)"))
            continue
        group = tuple(group_value(config, k) for k in group_by if k != "experiment")
        ev = metrics.best if checkpoint == "best" else metrics.last
        points.append(RunPoint(run_id, config.name, group, config.data, ev, run.run.status()))
    return points, skipped


def not_completed_note(points: Sequence[RunPoint]) -> str:
    """'; not completed: run-1 (failed), ...' for a figure title, '' when all completed."""
    odd = [f"{p.run_id} ({p.status})" for p in points if p.status != "completed"]
    return f"; NOT COMPLETED: {', '.join(odd)}" if odd else ""


def _facets(points: list[RunPoint], by_experiment: bool) -> dict[str, list[RunPoint]]:
    facets: dict[str, list[RunPoint]] = defaultdict(list)
    for p in points:
        facets[p.experiment if by_experiment else "all runs"].append(p)
    return dict(sorted(facets.items()))


def _label(group: tuple[str, ...]) -> str:
    return ", ".join(group) if group else "all runs"


def _colours(points: list[RunPoint]) -> dict[tuple[str, ...], int]:
    """One colour per group, the same in every panel and both figures."""
    return {g: i for i, g in enumerate(sorted({p.group for p in points}))}


def _binned(p: RunPoint) -> dict[tuple[int, int], tuple[float, float | None]]:
    """(lo, hi) -> (string_acc, baseline) over test and test_ood (val repeats test's range)."""
    out = {}
    for split in (p.evaluation.test, p.evaluation.test_ood):
        for b in split.bins if split is not None else []:
            if b.string_acc is not None:
                out[(b.lo, b.hi)] = (b.string_acc, b.string_baseline)
    return out


def length_grid_size_in(n_facets: int) -> tuple[float, float]:
    cols = min(n_facets, FACET_COLUMNS)
    rows = math.ceil(n_facets / FACET_COLUMNS)
    return FACET_SIZE_IN[0] * cols, FACET_SIZE_IN[1] * rows + 0.35


def _length_panel(
    ax: Axes, title: str, members: list[RunPoint], colours: dict[tuple[str, ...], int]
) -> None:
    """One experiment's panel: a line and a min-max band per group, the mean baseline dashed."""
    if len({p.data.model_dump_json() for p in members}) == 1:  # ranges shared by every run
        shade_length_ranges(ax, members[0].data)
    baseline: dict[tuple[int, int], list[float]] = defaultdict(list)
    by_group: dict[tuple[str, ...], list[RunPoint]] = defaultdict(list)
    for p in members:
        by_group[p.group].append(p)
        for key, (_, base) in _binned(p).items():
            if base is not None:
                baseline[key].append(base)
    for group, runs in sorted(by_group.items()):
        per_run = [_binned(p) for p in runs]
        keys = sorted({k for r in per_run for k in r})
        # A bin some run lacks is NaN there; every bin has at least one run.
        acc_rxk = np.array([[r[k][0] if k in r else np.nan for k in keys] for r in per_run])
        x = [(lo + hi) / 2 for lo, hi in keys]
        colour, mark = style.color(colours[group]), style.marker(colours[group])
        lo_k, hi_k = np.nanmin(acc_rxk, axis=0), np.nanmax(acc_rxk, axis=0)
        ax.fill_between(x, lo_k, hi_k, color=colour, alpha=0.2, lw=0)
        mean_k = np.nanmean(acc_rxk, axis=0)
        ax.plot(x, mean_k, color=colour, marker=mark, label=f"{_label(group)} (n={len(runs)})")
    keys = sorted(baseline)
    ax.plot(
        [(lo + hi) / 2 for lo, hi in keys],
        [float(np.mean(baseline[k])) for k in keys],
        ls="--",
        lw=0.9,
        color=style.BASELINE_COLOR,
        label="majority baseline",
    )
    ax.set(xlabel=LENGTH_LABEL, ylabel=ACCURACY_LABEL, ylim=(-0.02, 1.02), title=title)
    ax.legend(loc="lower left")


def accuracy_by_length(
    points: list[RunPoint], group_keys: Sequence[str], out_dir: Path, fmt: str
) -> Path:
    """Mean string accuracy per length bin for each group, min-max over its runs as a band."""
    if not any(_binned(p) for p in points):
        raise Skip("no finished run with length bins")
    facets = _facets(points, "experiment" in group_keys)
    colours = _colours(points)
    cols = min(len(facets), FACET_COLUMNS)
    rows = math.ceil(len(facets) / FACET_COLUMNS)
    with style.styled():
        fig = style.new_figure(*length_grid_size_in(len(facets)))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (title, members) in zip(axes, facets.items(), strict=False):
            _length_panel(ax, title, members, colours)
        for ax in axes[len(facets) :]:
            ax.set_axis_off()
        keys_text = ", ".join(k for k in group_keys if k != "experiment") or "all runs"
        fig.suptitle(
            f"mean over runs, band: min to max ({keys_text}){not_completed_note(points)}",
            fontsize=7,
            wrap=True,
        )
        return style.save_figure(fig, out_dir, "accuracy_by_length", fmt)


def bars_size_in(n_categories: int, n_groups: int) -> tuple[float, float]:
    width = min(style.PAGE_IN, max(style.COLUMN_IN, 1.0 + 0.3 * n_categories * n_groups))
    return width, BARS_HEIGHT_IN


def ood_accuracy(
    points: list[RunPoint], group_keys: Sequence[str], out_dir: Path, fmt: str
) -> Path:
    """Bars of mean OOD string accuracy per experiment and group; dots are single runs, a dashed
    tick is the majority baseline."""
    ood = [
        p for p in points if p.evaluation.test_ood and p.evaluation.test_ood.string_acc is not None
    ]
    if not ood:
        raise Skip("no finished run has a test_ood split")
    facets = _facets(ood, "experiment" in group_keys)
    colours = _colours(ood)
    order = sorted(colours)
    n = len(order)
    width = 0.8 / n
    with style.styled():
        fig = style.new_figure(*bars_size_in(len(facets), n))
        ax = fig.subplots()
        for c, (_, members) in enumerate(facets.items()):
            for group in order:
                accs = [p.evaluation.test_ood.string_acc for p in members if p.group == group]
                if not accs:
                    continue
                x = c - 0.4 + width * (order.index(group) + 0.5)
                i = colours[group]
                ax.bar(x, float(np.mean(accs)), width * 0.9, color=style.color(i), alpha=0.85)
                ax.plot([x] * len(accs), accs, "o", ms=2.5, color="black", zorder=3)
            bases = [p.evaluation.test_ood.string_baseline for p in members]
            bases = [b for b in bases if b is not None]
            if bases:
                ax.hlines(
                    float(np.mean(bases)),
                    c - 0.45,
                    c + 0.45,
                    colors=style.BASELINE_COLOR,
                    linestyles="--",
                    lw=0.9,
                )
        handles = [Patch(color=style.color(colours[g]), label=_label(g)) for g in order]
        handles.append(
            Line2D([], [], color=style.BASELINE_COLOR, ls="--", label="majority baseline")
        )
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 3))
        ax.set_xticks(range(len(facets)), list(facets), rotation=30 if len(facets) > 3 else 0)
        ax.set(ylabel=f"OOD {ACCURACY_LABEL}", ylim=(0, 1.02), xlim=(-0.6, len(facets) - 0.4))
        ax.grid(axis="x", visible=False)
        if note := not_completed_note(ood):
            ax.set_title(note.removeprefix("; "), fontsize=7, wrap=True)
        return style.save_figure(fig, out_dir, "ood_accuracy", fmt)
