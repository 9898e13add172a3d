"""Figures of a run and of a set of runs, drawn from tiny real runs: valid image files of the
expected pixel size, not blank; figures without data are skipped, not failed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from fsmrun.analysis.plots import (
    groups,
    internals,
    plot_run,
    plot_runs,
    run_figures,
    sweep_group_by,
)
from fsmrun.analysis.plots.files import RunFiles
from fsmrun.base.errors import UserError
from fsmrun.lang.fsm import compile_regex
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.sweep import SweepCell, SweepRecord, SweepSpec
from fsmrun.train.loop import train_one_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Figure sizes at 200 dpi, by hand: learning curves 6.8 x 4.2 in; accuracy by length
# 3.3 x 2.4 in; attention of 1 layer x 2 heads (0.9 + 2 * 1.5) x (0.6 + 1 * 1.5) in; hidden
# states of 2 panels (embeddings, layer 0) (0.3 + 2 * 1.75) x (0.7 + 1.75) in.
RUN_PIXELS = {
    "learning_curves": (1360, 840),
    "accuracy_by_length": (660, 480),
    "attention": (780, 420),
    "hidden_states": (760, 490),
}


def _tiny(seed: int, arch: str) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "tiny",
            "seed": seed,
            "data": {
                "regex": "(a|b)*ab",
                "alphabet": "ab",
                "min_len": 1,
                "max_len": 8,
                "ood_min_len": 9,
                "ood_max_len": 12,
                "n_train": 64,
                "n_val": 32,
                "n_test": 32,
                "n_test_ood": 32,
            },
            "model": {"arch": arch, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "warmup_steps": 2,
                "log_every": 2,
                "capture_epochs": [1, 2],
                "length_bins": [1, 4, 7, 9, 11, 13],
            },
        }
    )


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished tiny runs with captures: transformer seeds 0 and 1, LSTM seed 0."""
    root = tmp_path_factory.mktemp("plot_results")
    trained = {}
    for key, seed, arch in (
        ("t0", 0, "transformer"),
        ("t1", 1, "transformer"),
        ("lstm", 0, "lstm"),
    ):
        result = train_one_experiment(
            _tiny(seed, arch), device="cpu", results_root=root, progress=False
        )
        trained[key] = result.run_dir
    return trained


@pytest.fixture
def run_copy(runs: dict[str, Path], tmp_path: Path):
    """A private copy of one trained run folder (tests write plots/ into it)."""

    def copy(key: str) -> Path:
        folder = tmp_path / key
        shutil.copytree(runs[key], folder, ignore=shutil.ignore_patterns("checkpoints"))
        return folder

    return copy


@pytest.fixture
def no_graphviz(monkeypatch):
    monkeypatch.setattr(run_figures.shutil, "which", lambda name: None)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_not_blank(path: Path) -> None:
    pixels = imread(path)[..., :3]  # float RGB in [0, 1]
    assert pixels.std() > 0.02, f"{path} looks blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{path} has almost no colours"


def test_every_run_figure_is_a_png_of_its_size_and_not_blank(run_copy, no_graphviz):
    folder = run_copy("t0")
    report = plot_run(folder)
    assert [p.name for p in report.written] == [f"{name}.png" for name in RUN_PIXELS]
    for path in report.written:
        assert path.parent == folder / "plots"
        assert png_size(path) == RUN_PIXELS[path.stem]
        assert_not_blank(path)
    assert [s.figure for s in report.skipped] == ["automaton"]
    assert not [p for p in (folder / "plots").iterdir() if p.name.startswith(".")]  # no temp files


def _files_outside_plots(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "plots"
    }


def test_plotting_a_run_writes_only_under_plots(run_copy, no_graphviz):
    folder = run_copy("t0")
    before = _files_outside_plots(folder)
    assert "run.json" in before and "metrics.json" in before
    report = plot_run(folder)
    assert len(report.written) == 4
    assert _files_outside_plots(folder) == before  # same files, bytes and mtimes
    assert {p.parent for p in report.written} == {folder / "plots"}


def test_drawing_twice_gives_identical_bytes(run_copy):
    run = RunFiles(run_copy("t0"))
    first = run_figures.length_accuracy(run, "png").read_bytes()
    assert run_figures.length_accuracy(run, "png").read_bytes() == first


def test_svg_figures_of_a_run_have_valid_headers(run_copy, no_graphviz):
    report = plot_run(run_copy("t0"), fmt="svg")
    assert len(report.written) == 4
    for path in report.written:
        assert path.suffix == ".svg"
        data = path.read_bytes()
        assert data.startswith(b"<?xml") and b"<svg" in data[:1000]
        assert data.rstrip().endswith(b"</svg>")


def test_pdf_figures_of_a_set_have_valid_headers(runs, tmp_path):
    report = plot_runs([runs["t0"], runs["lstm"]], tmp_path, fmt="pdf")
    assert [p.name for p in report.written] == ["accuracy_by_length.pdf", "ood_accuracy.pdf"]
    for path in report.written:
        data = path.read_bytes()
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_recurrent_run_has_no_attention_but_its_hidden_states_are_drawn(runs, run_copy):
    run = RunFiles(run_copy("lstm"))
    cap = internals.load_capture(run)
    with pytest.raises(run_figures.Skip, match="no attention \\(recurrent architecture\\)"):
        internals.attention_maps(run, cap, "png")
    path = internals.hidden_states(run, cap, "png")
    assert png_size(path) == RUN_PIXELS["hidden_states"]  # embeddings + 1 LSTM layer
    assert_not_blank(path)


def test_figures_without_data_are_skipped_with_a_notice(run_copy, no_graphviz):
    folder = run_copy("t0")
    shutil.rmtree(folder / "captures")
    (folder / "metrics.json").unlink()  # as in a run that has not finished
    report = plot_run(folder)
    assert [p.name for p in report.written] == ["learning_curves.png"]
    assert [s.notice() for s in report.skipped] == [
        "skipped accuracy_by_length: no metrics.json yet (the run has not finished)",
        "skipped attention: no captures (train with --set 'train.capture_epochs=[1]' to save some)",
        "skipped hidden_states: no captures (train with --set 'train.capture_epochs=[1]' to save "
        "some)",
        "skipped automaton: Graphviz `dot` is not installed (install graphviz to draw the "
        "automaton)",
    ]


def test_drawing_without_captures_does_not_import_torch(run_copy):
    # The automaton is drawn too where Graphviz is installed (a subprocess, no torch).
    folder = run_copy("t0")
    shutil.rmtree(folder / "captures")
    (folder / "metrics.json").unlink()
    code = (
        "import sys; from fsmrun.analysis.plots import plot_run; "
        f"r = plot_run({str(folder)!r}); "
        "names = sorted(p.stem for p in r.written); "
        "assert names in (['learning_curves'], ['automaton', 'learning_curves']), r; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bad_string_index_or_capture_epoch_raises_before_writing(run_copy):
    folder = run_copy("t0")
    with pytest.raises(UserError, match=r"string index 8 is out of range.*8 strings \(0\.\.7\)"):
        plot_run(folder, string_index=8)
    with pytest.raises(UserError, match="no capture of epoch 5.*captured epochs: 1, 2"):
        plot_run(folder, capture_epoch=5)
    assert not (folder / "plots").exists()


def test_capture_epoch_chooses_the_capture(runs):
    run = RunFiles(runs["t0"])
    assert run.capture_epochs() == [1, 2]  # counted from 1: after the first and second epoch
    assert internals.load_capture(run).epoch == 2
    cap = internals.load_capture(run, 1)
    assert cap.epoch == 1 and cap.step == 4  # 64 strings / batch 16 = 4 steps an epoch
    assert cap.attentions.shape[:3] == (1, 8, 2)  # layers, strings, heads
    assert cap.hidden_states.shape[0] == 2  # embeddings + 1 layer
    assert len(cap.strings) == len(cap.lengths) == 8


def test_automaton_is_rendered_by_graphviz_when_installed(run_copy, monkeypatch):
    folder = run_copy("t0")
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=b"%PDF-1.4 fake", stderr=b"")

    monkeypatch.setattr(run_figures.shutil, "which", lambda name: "/opt/bin/dot")
    monkeypatch.setattr(run_figures.subprocess, "run", fake_run)
    path = run_figures.automaton(RunFiles(folder), "pdf")
    assert path == folder / "plots" / "automaton.pdf"
    assert path.read_bytes() == b"%PDF-1.4 fake"
    assert calls == [["/opt/bin/dot", "-Tpdf", str(folder / "fsm.dot")]]


def test_automaton_is_skipped_when_graphviz_is_missing_or_fails(run_copy, monkeypatch):
    folder = run_copy("t0")
    monkeypatch.setattr(run_figures.shutil, "which", lambda name: None)
    with pytest.raises(run_figures.Skip, match="Graphviz `dot` is not installed"):
        run_figures.automaton(RunFiles(folder), "png")
    monkeypatch.setattr(run_figures.shutil, "which", lambda name: "/opt/bin/dot")
    monkeypatch.setattr(
        run_figures.subprocess,
        "run",
        lambda args, **kw: subprocess.CompletedProcess(args, 1, b"", b"Error: syntax\nmore"),
    )
    with pytest.raises(run_figures.Skip, match=r"failed \(exit 1: Error: syntax\)"):
        run_figures.automaton(RunFiles(folder), "png")
    assert not (folder / "plots").exists()


def test_pca_puts_the_widest_direction_first_with_a_fixed_sign():
    points_nx2 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    proj_nx2, ratio_2 = internals.pca_2d(points_nx2)
    # Variance along y is 8, along x 2: PC1 is y, PC2 is x, each with a positive loading.
    np.testing.assert_allclose(proj_nx2, [[0, 1], [0, -1], [2, 0], [-2, 0]], atol=1e-12)
    np.testing.assert_allclose(ratio_2, [0.8, 0.2])
    single_nx2, single_ratio = internals.pca_2d(np.array([[3.0, 4.0]]))
    np.testing.assert_array_equal(single_nx2, [[0.0, 0.0]])
    np.testing.assert_array_equal(single_ratio, [0.0, 0.0])


def test_prefix_states_follow_the_dfa_from_bos():
    dfa = compile_regex("(a|b)*ab", "ab")  # q0 -a-> q1 -b-> q2 (accepting); b from q0 stays
    np.testing.assert_array_equal(
        internals.prefix_states(dfa, ["ab", "b", "aab"]), [0, 1, 2, 0, 0, 0, 1, 1, 2]
    )


def test_group_values_come_from_the_config():
    cfg = _tiny(3, "lstm")
    assert groups.group_value(cfg, "experiment") == "tiny"
    assert groups.group_value(cfg, "arch") == "lstm"
    assert groups.group_value(cfg, "seed") == "3"
    assert groups.group_value(cfg, "model.d_model") == "16"
    with pytest.raises(UserError, match="ambiguous; write data.max_len or model.max_len"):
        groups.group_value(cfg, "max_len")
    with pytest.raises(UserError, match="unknown group-by key 'colour'"):
        groups.group_value(cfg, "colour")
    with pytest.raises(UserError, match="unknown group-by key 'model.colour'"):
        groups.group_value(cfg, "model.colour")


def test_set_figures_group_seeds_and_are_pngs_of_their_size(runs, tmp_path):
    folders = [runs["t0"], runs["t1"], runs["lstm"]]
    points, skipped = groups.collect(folders, ("experiment", "arch"), "best")
    assert [p.group for p in points] == [("transformer",), ("transformer",), ("lstm",)]
    assert skipped == []
    report = plot_runs(folders, tmp_path / "figs", group_by=("experiment", "arch"))
    # One experiment panel 3.3 x (2.4 + 0.35) in; bars: max(3.3, 1 + 0.3 * 1 * 2) x 2.6 in.
    sizes = {p.stem: png_size(p) for p in report.written}
    assert sizes == {"accuracy_by_length": (660, 550), "ood_accuracy": (660, 520)}
    for path in report.written:
        assert path.parent == tmp_path / "figs"
        assert_not_blank(path)


def test_set_figures_skip_unfinished_runs_by_name(runs, run_copy, tmp_path):
    unfinished = run_copy("t1")
    (unfinished / "metrics.json").unlink()
    report = plot_runs([runs["t0"], unfinished], tmp_path / "figs", fmt="svg")
    assert [p.name for p in report.written] == ["accuracy_by_length.svg", "ood_accuracy.svg"]
    run_id = RunFiles(unfinished).record().run_id
    assert [s.notice() for s in report.skipped] == [
        f"skipped run {run_id}: no metrics.json (not finished)"
    ]


def test_set_figures_without_finished_runs_are_skipped(run_copy, tmp_path):
    unfinished = run_copy("t0")
    (unfinished / "metrics.json").unlink()
    report = plot_runs([unfinished], tmp_path / "figs")
    assert report.written == []
    assert [s.figure for s in report.skipped][1:] == ["accuracy_by_length", "ood_accuracy"]


def test_unknown_format_is_refused():
    with pytest.raises(UserError, match="unknown figure format 'gif'"):
        plot_runs([Path("x")], Path("y"), fmt="gif")


def test_a_sweep_is_grouped_by_experiment_and_the_keys_its_cells_vary():
    def cell(i: int, experiment: str, **overrides: object) -> SweepCell:
        overrides = {k.replace("__", "."): v for k, v in overrides.items()}
        return SweepCell(
            index=i, source=experiment, experiment=experiment, overrides=overrides,
            config_hash=f"{i:064x}", status="done",
        )  # fmt: skip

    cells = [
        cell(0, "parity", train__epochs=3, model__arch="lstm", seed=0),
        cell(1, "parity", train__epochs=3, model__arch="lstm", seed=1),
        cell(2, "parity", train__epochs=3, model__arch="transformer", model__pos_encoding="none"),
    ]
    spec = SweepSpec(name="s", experiments=["parity"])
    record = SweepRecord(
        sweep_id="s-0", sweep_hash="0", spec=spec, created=0, updated=0, counts={}, cells=cells
    )
    # epochs is shared, seed is the band; pos_encoding is set in one cell only, so it varies.
    assert sweep_group_by(record) == ["experiment", "model.arch", "model.pos_encoding"]
    assert sweep_group_by(record.model_copy(update={"cells": cells[:2]})) == ["experiment"]
