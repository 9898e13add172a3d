"""Figures that do not mislead: a failed or running run says so in every title, a checkpoint
that never trained gets no curve, every legend entry is a drawn line, each split has its own
baseline, and no text falls outside the canvas (text bounding boxes checked after drawing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fsmrun.analysis.plots import internals, run_figures, style
from fsmrun.analysis.plots.files import RunFiles


@pytest.fixture
def figures(monkeypatch) -> list[tuple[str, Figure]]:
    """Every figure saved while the test runs, by name (style.save_figure still saves it)."""
    saved: list[tuple[str, Figure]] = []
    real = style.save_figure

    def keep(fig: Figure, folder: Path, name: str, fmt: str) -> Path:
        saved.append((name, fig))
        return real(fig, folder, name, fmt)

    monkeypatch.setattr(style, "save_figure", keep)
    return saved


def _texts_outside(fig: Figure) -> list[str]:
    """What leaves the canvas once drawn: titles, axis labels and legends one by one, then
    everything matplotlib draws at all (its tight box, which counts only drawn tick labels)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox

    def outside(box) -> bool:
        return (box.x0 < canvas.x0 - 1 or box.x1 > canvas.x1 + 1 or box.y0 < canvas.y0 - 1
                or box.y1 > canvas.y1 + 1)  # fmt: skip

    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
    found = [t.get_text() for t in texts if t.get_text().strip()
             and outside(t.get_window_extent(renderer))]  # fmt: skip
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    found += [repr(lg) for lg in legends if lg is not None and outside(lg.get_window_extent())]
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    if outside(tight):
        found.append(f"drawn area {tight.bounds} beyond the canvas {canvas.bounds}")
    return found


def _legend_labels_drawn(fig: Figure) -> list[str]:
    """Labels of legend entries whose line has no finite point (should be none)."""
    empty = []
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if isinstance(handle, Line2D):
                ys = [float(y) for y in handle.get_ydata()]
                if not any(math.isfinite(y) for y in ys):
                    empty.append(label)
    return empty


def _titles(fig: Figure) -> list[str]:
    found = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    return found + [ax.get_title() for ax in fig.axes if ax.get_title()]


def _mark(folder: Path, status: str) -> None:
    record = json.loads((folder / "run.json").read_text())
    record.update(status=status, error="boom: loss went non-finite" if status == "failed" else None)
    (folder / "run.json").write_text(json.dumps(record))


def test_every_figure_of_a_run_keeps_its_text_on_the_canvas_and_draws_its_legend(
    cli, tiny_toml, tmp_path, figures
):
    result = cli("train", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                 "--no-progress", "--set", "train.capture_epochs=[2]")  # fmt: skip
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("tiny/*/v1")
    plotted = cli("plot", folder, "--results-dir", tmp_path)
    assert plotted.exit_code == 0, plotted.output
    names = [name for name, _ in figures]
    assert {"learning_curves", "accuracy_by_length", "attention", "hidden_states"} <= set(names)
    for name, fig in figures:
        assert _texts_outside(fig) == [], name
        assert _legend_labels_drawn(fig) == [], name
    by_length = dict(figures)["accuracy_by_length"]
    labels = by_length.axes[0].get_legend_handles_labels()[1]
    assert {"val baseline", "test baseline", "test_ood baseline"} <= set(labels)
    assert all("FAILED" not in t and "RUNNING" not in t for _, f in figures for t in _titles(f))


@pytest.mark.parametrize(
    ("status", "mark"), [("failed", "FAILED at step 8: boom"), ("running", "RUNNING (step 8")]
)
def test_a_run_that_did_not_complete_is_marked_in_every_title(trained_copy, figures, status,
                                                              mark):  # fmt: skip
    folder = trained_copy.folders[0]
    _mark(folder, status)
    if status == "running":  # a live writer: hold the folder's lock as a training process would
        from fsmrun.runs.lock import FolderLock

        lock = FolderLock(folder)
        assert lock.acquire()
    run = RunFiles(folder)
    try:
        if status == "running":  # another process holds it: the probe must see it held
            import subprocess
            import sys

            holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = "
                                       "os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, "
                                       "fcntl.LOCK_EX); print('held', flush=True); "
                                       "sys.stdin.read()", str(folder / ".lock")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)  # fmt: skip
            lock.release()
            assert holder.stdout.readline() == "held\n"
        try:
            run_figures.learning_curves(run, "png")
            run_figures.length_accuracy(run, "png")
        finally:
            if status == "running":
                holder.communicate("")
    finally:
        if status == "running":
            lock.release()
    for name, fig in figures:
        assert any(mark in title for title in _titles(fig)), (name, _titles(fig))
        assert _texts_outside(fig) == [], name


def test_a_checkpoint_that_never_trained_gets_no_curve(cli, tiny_toml, tmp_path, figures):
    result = cli("train", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                 "--no-progress", "--set", "train.lr=1e30")  # fmt: skip
    assert result.exit_code == 1  # non-finite at step 1: the only checkpoint is step 0
    (folder,) = tmp_path.glob("tiny/*/v1")
    plotted = cli("plot", folder, "--results-dir", tmp_path)
    assert plotted.exit_code == 0, plotted.output
    assert "untrained model (step 0) - FAILED at step" in plotted.stderr
    assert "accuracy_by_length" not in [name for name, _ in figures]
    for name, fig in figures:
        assert any("FAILED" in title for title in _titles(fig)), name
        assert _legend_labels_drawn(fig) == [], name
    assert internals is not None


def test_a_comparison_names_the_runs_that_did_not_complete(cli, trained_copy, tmp_path, figures):
    failed, other = trained_copy.folders
    _mark(failed, "failed")
    out = tmp_path / "figures"
    result = cli("plot", *trained_copy.run_ids, "--out", out, "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    assert {"accuracy_by_length", "ood_accuracy"} <= {name for name, _ in figures}
    note = f"NOT COMPLETED: {trained_copy.run_ids[0]} (failed)"
    for name, fig in figures:
        assert any(note in title for title in _titles(fig)), (name, _titles(fig))
        assert _texts_outside(fig) == [], name
    assert other.is_dir()
