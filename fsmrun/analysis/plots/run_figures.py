"""Figures of one run read from its files: learning curves, accuracy by length, the automaton."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from matplotlib.axes import Axes

from fsmrun.analysis.plots import style
from fsmrun.analysis.plots.files import RunFiles
from fsmrun.analysis.plots.outcome import Skip
from fsmrun.base.io import atomic_write_bytes
from fsmrun.schemas.config import DataConfig
from fsmrun.schemas.records import CheckpointEval, HistoryRecord, Metrics

CURVES_SIZE_IN = (style.PAGE_IN, 4.2)
LENGTH_SIZE_IN = (style.COLUMN_IN, 2.4)
ACCURACY_LABEL = "accuracy (fraction)"
LENGTH_LABEL = "string length (symbols)"
# Validation metrics that are fractions in [0, 1], drawn on one axis (baselines are left to
# the length figure, where they vary by bin).
_VAL_RATES = ("string_acc", "class_acc", "token_acc", "next_valid", "state_acc")
_DOT_TIMEOUT_S = 60


def _best_step(history: list[HistoryRecord], metrics: Metrics | None) -> int | None:
    """The step of the best checkpoint: from metrics.json, else the last improving eval."""
    if metrics is not None and metrics.early_stop.best_step is not None:
        return metrics.early_stop.best_step
    improved = [h.step for h in history if h.kind == "eval" and h.improved]
    return improved[-1] if improved else None


def _loss_axes(ax: Axes, train: list[HistoryRecord]) -> None:
    steps = [h.step for h in train]
    names = [k for k in (train[0].losses or {}) if any((h.losses or {}).get(k) for h in train)]
    for name in names:
        ax.plot(steps, [(h.losses or {}).get(name, float("nan")) for h in train], label=name)
    ax.set(xlabel="step", ylabel="training loss (nats)", title="loss components")
    ax.legend(ncols=2)


def _series_axes(ax: Axes, train: list[HistoryRecord], field: str, ylabel: str, i: int) -> None:
    points = [(h.step, getattr(h, field)) for h in train if getattr(h, field) is not None]
    ax.plot([s for s, _ in points], [v for _, v in points], color=style.color(i))
    ax.set(xlabel="step", ylabel=ylabel, title=ylabel.split(" (")[0])
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))


def _validation_axes(
    ax: Axes, evals: list[HistoryRecord], monitor: str | None, best_step: int | None
) -> None:
    steps = [h.step for h in evals]
    for i, rate in enumerate(_VAL_RATES):
        key = f"val.{rate}"
        if not any(key in (h.metrics or {}) for h in evals):
            continue
        values = [(h.metrics or {}).get(key, float("nan")) for h in evals]
        width = 2.0 if key == monitor else 1.0
        ax.plot(steps, values, marker=style.marker(i), lw=width, color=style.color(i), label=rate)
        if key == monitor and best_step in steps:
            at = steps.index(best_step)
            ax.plot([best_step], [values[at]], marker="*", ms=10, color="black", ls="none")
    if best_step is not None and best_step > 0:  # step 0 is the untrained model, not a best
        ax.axvline(best_step, color=style.BASELINE_COLOR, ls="--", lw=0.8)
        ax.annotate(
            f"best (step {best_step})",
            xy=(best_step, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=6.5,
            color=style.BASELINE_COLOR,
        )
    ax.set(xlabel="step", ylabel=ACCURACY_LABEL, title="validation", ylim=(-0.02, 1.02))
    if ax.get_legend_handles_labels()[1]:
        ax.legend(ncols=2, loc="best")  # "best": away from the curves and the best-step line


def learning_curves(run: RunFiles, fmt: str) -> Path:
    """Loss components, learning rate, gradient norm and validation rates against the step."""
    history = run.history()
    train = [h for h in history if h.kind == "train" and h.losses]
    evals = [h for h in history if h.kind == "eval" and h.metrics]
    if not train and not evals:
        mark = run.status_mark()
        raise Skip(f"no training history{mark or ' yet'} (logs/history.jsonl holds no step)")
    metrics = run.metrics()
    config = run.config()
    monitor = metrics.monitor if metrics else (config.train.monitor if config else None)
    with style.styled():
        fig = style.new_figure(*CURVES_SIZE_IN)
        (ax_loss, ax_lr), (ax_grad, ax_val) = fig.subplots(2, 2, sharex=True)
        if train:
            _loss_axes(ax_loss, train)
            _series_axes(ax_lr, train, "lr", "learning rate (per step)", 0)
            _series_axes(ax_grad, train, "grad_norm", "gradient norm (L2, before clipping)", 3)
        _validation_axes(ax_val, evals, monitor, _best_step(history, metrics))
        for ax in (ax_loss, ax_lr):
            ax.set_xlabel("")
        fig.suptitle(run.record().run_id + run.status_mark(), fontsize=8, wrap=True)
        return style.save_figure(fig, run.plots_dir(), "learning_curves", fmt)


def shade_length_ranges(ax: Axes, data: DataConfig) -> None:
    """Shade the training length range and the OOD range apart, labelled for the legend."""
    ax.axvspan(
        data.min_len - 0.5,
        data.max_len + 0.5,
        color=style.TRAIN_RANGE_COLOR,
        alpha=0.08,
        lw=0,
        label="training lengths",
    )
    if data.n_test_ood:
        ax.axvspan(
            data.ood_min_len - 0.5,
            data.ood_max_len + 0.5,
            color=style.OOD_RANGE_COLOR,
            alpha=0.08,
            lw=0,
            label="OOD lengths",
        )


def _checkpoint(metrics: Metrics, which: str) -> CheckpointEval:
    return metrics.best if which == "best" else metrics.last


def length_accuracy(run: RunFiles, fmt: str, checkpoint: str = "best") -> Path:
    """Whole-string accuracy per length bin on every split, with the majority baseline."""
    metrics = run.metrics()
    if metrics is None:
        raise Skip("no metrics.json yet (the run has not finished)")
    ev = _checkpoint(metrics, checkpoint)
    if ev.step == 0:
        raise Skip(
            f"the {checkpoint} checkpoint is the untrained model (step 0){run.status_mark()}: "
            "no learned accuracy to draw"
        )
    splits = {"val": ev.val, "test": ev.test, "test_ood": ev.test_ood}
    binned = {name: s.bins for name, s in splits.items() if s is not None and s.bins}
    if not binned:
        raise Skip("metrics.json holds no length bins")
    with style.styled():
        fig = style.new_figure(*LENGTH_SIZE_IN)
        ax = fig.subplots()
        config = run.config()
        if config is not None:
            shade_length_ranges(ax, config.data)
        for i, (name, bins) in enumerate(binned.items()):
            x = [(b.lo + b.hi) / 2 for b in bins]
            accuracy = [(xi, b.string_acc) for xi, b in zip(x, bins, strict=True)
                        if b.string_acc is not None]  # fmt: skip
            if accuracy:  # a legend entry only for a line that is drawn
                ax.plot(*zip(*accuracy, strict=True), marker=style.marker(i),
                        color=style.color(i), label=name)  # fmt: skip
            base = [(xi, b.string_baseline) for xi, b in zip(x, bins, strict=True)
                    if b.string_baseline is not None]  # fmt: skip
            if base:  # each split's own majority baseline, in its colour, dashed
                ax.plot(*zip(*base, strict=True), ls="--", lw=0.9, alpha=0.8,
                        color=style.color(i), label=f"{name} baseline")  # fmt: skip
        ax.set(
            xlabel=LENGTH_LABEL,
            ylabel=ACCURACY_LABEL,
            ylim=(-0.02, 1.02),
        )
        ax.set_title(f"{checkpoint} checkpoint (step {ev.step}){run.status_mark()}", wrap=True)
        ax.legend(loc="lower left", ncols=2)
        return style.save_figure(fig, run.plots_dir(), "accuracy_by_length", fmt)


def automaton(run: RunFiles, fmt: str) -> Path:
    """The minimal DFA rendered by Graphviz `dot` from fsm.dot (Skip when dot is missing)."""
    dot_file = run.dot_path()
    if dot_file is None:
        raise Skip("no fsm.dot in the run folder")
    dot = shutil.which("dot")
    if dot is None:
        raise Skip("Graphviz `dot` is not installed (install graphviz to draw the automaton)")
    args = [dot, f"-T{fmt}", str(dot_file)]
    if fmt == "png":
        args.insert(1, f"-Gdpi={style.DPI}")
    try:
        done = subprocess.run(args, capture_output=True, timeout=_DOT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"Graphviz `dot` failed ({exc})") from exc
    if done.returncode != 0 or not done.stdout:
        first = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise Skip(f"Graphviz `dot` failed (exit {done.returncode}: {first})")
    path = run.plot_path("automaton", fmt)
    atomic_write_bytes(path, done.stdout)
    return path
