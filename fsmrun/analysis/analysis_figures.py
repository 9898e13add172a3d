"""Figures of one run's analysis, written into `<run>/analysis/`: the extracted machine beside
the target (Graphviz), probe accuracy and selectivity by layer, exact agreement by length.
Same look as `plots/` (style.py); a figure whose tool or data is missing is skipped (Skip)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fsmrun.analysis.plots import style
from fsmrun.analysis.plots.outcome import Skip
from fsmrun.analysis.plots.run_figures import ACCURACY_LABEL, LENGTH_LABEL, shade_length_ranges
from fsmrun.base.io import atomic_write_bytes
from fsmrun.lang.fsm import DFA
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.analysis import AnalysisReport
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import Metrics

DOT_TIMEOUT_S = 60
PANEL_SIZE_IN = (style.PAGE_IN, 2.4)


def _cluster(machine: DFA, name: str, title: str) -> list[str]:
    """A Graphviz cluster drawing `machine` as DFA.to_dot does (dead state left out)."""
    return [
        f"  subgraph cluster_{name} {{",
        f'    label="{title}";',
        *machine.dot_lines(prefix=f"{name}_", indent="    "),
        "  }",
    ]


def machines_dot(target: DFA, extracted: DFA) -> str:
    """Graphviz source with the target and the extracted machine side by side."""
    lines = ["digraph analysis {", "  rankdir=LR;"]
    lines += _cluster(target, "target", f"target ({target.num_states} states)")
    lines += _cluster(extracted, "extracted", f"extracted ({extracted.num_states} states)")
    lines.append("}")
    return "\n".join(lines) + "\n"


def machines(folder: RunFolder, target: DFA, extracted: DFA | None, fmt: str) -> Path:
    """`analysis/machines.<fmt>`, rendered by Graphviz `dot` (Skip without it)."""
    if extracted is None:
        raise Skip("no extracted machine (extraction stopped before a first hypothesis)")
    dot = shutil.which("dot")
    if dot is None:
        raise Skip("Graphviz `dot` is not installed (install graphviz to draw the machines)")
    args = [dot, f"-T{fmt}"] + ([f"-Gdpi={style.DPI}"] if fmt == "png" else [])
    try:
        done = subprocess.run(
            args,
            input=machines_dot(target, extracted).encode(),
            capture_output=True,
            timeout=DOT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"Graphviz `dot` failed ({exc})") from exc
    if done.returncode != 0 or not done.stdout:
        raise Skip(f"Graphviz `dot` failed (exit {done.returncode})")
    path = folder.analysis_figure("machines", fmt)
    atomic_write_bytes(path, done.stdout)
    return path


def probes(folder: RunFolder, report: AnalysisReport, fmt: str) -> Path:
    """`analysis/probes.<fmt>`: task and control accuracy per layer (test, OOD), selectivity."""
    if report.probes is None or not report.probes.layers:
        raise Skip("no probes in this analysis")
    layers = report.probes.layers
    names = [p.layer for p in layers]
    x = list(range(len(layers)))
    panels = [("test", "test_acc", "control_test_acc", "selectivity_test")]
    if layers[0].ood_acc is not None:
        panels.append(("OOD", "ood_acc", "control_ood_acc", "selectivity_ood"))
    with style.styled():
        fig = style.new_figure(*PANEL_SIZE_IN)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, task, control, selectivity) in zip(axes, panels, strict=True):
            ax.plot(
                x,
                [getattr(p, task) for p in layers],
                marker="o",
                color=style.color(0),
                label="probe: DFA state",
            )
            ax.plot(
                x,
                [getattr(p, control) for p in layers],
                marker="s",
                color=style.color(1),
                label="probe: control task",
            )
            ax.bar(
                x,
                [getattr(p, selectivity) for p in layers],
                width=0.4,
                color=style.color(2),
                alpha=0.6,
                label="selectivity",
            )
            majority = (
                report.probes.majority_test if title == "test" else report.probes.majority_ood
            )
            if majority is not None:
                ax.axhline(
                    majority, ls="--", lw=0.9, color=style.BASELINE_COLOR, label="majority baseline"
                )
            ax.set_xticks(x, names)
            ax.set(
                title=f"{title} prefixes",
                ylabel=ACCURACY_LABEL,
                ylim=(min(0.0, *(getattr(p, selectivity) for p in layers)) - 0.05, 1.05),
                xlabel="layer",
            )
        axes[0].legend(loc="lower right")
        return style.save_figure(fig, folder.analysis_dir, "probes", fmt)


def agreement(
    folder: RunFolder,
    report: AnalysisReport,
    exp: ExperimentConfig,
    metrics: Metrics | None,
    fmt: str,
) -> Path:
    """`analysis/agreement.<fmt>`: the exact fraction of strings of each length on which the
    extracted machine agrees with the target, beside the model's string accuracy per length
    bin on the test splits (metrics.json), which are sampled, not exhaustive."""
    if report.comparison is None:
        raise Skip("no extracted machine to compare")
    values = report.comparison.agreement
    with style.styled():
        fig = style.new_figure(style.COLUMN_IN, 2.4)
        ax = fig.subplots()
        shade_length_ranges(ax, exp.data)
        ax.plot(
            range(len(values)), values, color=style.color(0), label="extracted = target (exact)"
        )
        if metrics is not None:
            ev = metrics.best if report.checkpoint == "best" else metrics.last
            for i, (name, split) in enumerate((("test", ev.test), ("test_ood", ev.test_ood))):
                if split is None or not split.bins:
                    continue
                ax.plot(
                    [(b.lo + b.hi) / 2 for b in split.bins],
                    [b.string_acc for b in split.bins],
                    marker=style.marker(i + 1),
                    ls=":",
                    color=style.color(i + 1),
                    label=f"model accuracy ({name})",
                )
        ax.set(xlabel=LENGTH_LABEL, ylabel=ACCURACY_LABEL, ylim=(-0.02, 1.02))
        ax.legend(loc="lower left")
        return style.save_figure(fig, folder.analysis_dir, "agreement", fmt)
