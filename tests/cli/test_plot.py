"""`fsmrun plot`: paths of the figures on stdout, notices on stderr, user errors exit 2; the
figures of a sweep's completed runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from fsmrun.analysis.plots import run_figures
from fsmrun.sweeps import coordinator as sweep
from fsmrun.sweeps import spec as sweep_spec


@pytest.fixture(autouse=True)
def no_graphviz(monkeypatch):
    monkeypatch.setattr(run_figures.shutil, "which", lambda name: None)


def test_plot_of_one_run_writes_into_its_plots_folder(cli, trained_copy):
    run_id, folder = trained_copy.run_ids[0], trained_copy.folders[0]
    result = cli("plot", run_id[: len("tiny-") + 6], "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [p.name for p in paths] == ["learning_curves.png", "accuracy_by_length.png"]
    for path in paths:
        assert path.parent == (folder / "plots").resolve()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The CLI fixture's runs save no captures, and Graphviz is missing: one line each.
    assert "skipped attention: no captures" in result.stderr
    assert "skipped hidden_states: no captures" in result.stderr
    assert "skipped automaton: Graphviz `dot` is not installed" in result.stderr
    assert "2 figure(s) written" in result.stderr


def test_plot_of_several_runs_writes_the_set_figures(cli, trained_copy):
    out = trained_copy.root / "figs"
    result = cli(
        "plot", *trained_copy.run_ids, "--out", out, "--format", "svg",
        "--results-dir", trained_copy.root,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(out / "accuracy_by_length.svg"),
        str(out / "ood_accuracy.svg"),
    ]
    assert (out / "ood_accuracy.svg").read_bytes().startswith(b"<?xml")


def test_plot_of_an_experiment_defaults_to_the_results_plots_folder(cli, trained_copy):
    result = cli("plot", "-e", "tiny", "--by", "seed", "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(trained_copy.root / "plots" / "accuracy_by_length.png"),
        str(trained_copy.root / "plots" / "ood_accuracy.png"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: no run 'nope' under"),
        ([], "error: give a run (id, prefix or folder), several runs, --experiment EXP or "),
        (["-e", "nope"], "error: no runs of experiment 'nope' under"),
        (["-e", "tiny", "--by", "colour"], "error: unknown group-by key 'colour'"),
        (["tiny-", "--out", "x"], "error: 'tiny-' matches 2 runs"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(cli, trained_copy, args, message):
    result = cli("plot", *args, "--results-dir", trained_copy.root)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)
    if "matches 2 runs" not in message:  # an ambiguous prefix lists the candidates below
        assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (trained_copy.root / "plots").exists()
    assert not any((f / "plots").exists() for f in trained_copy.folders)


def test_out_with_one_run_is_refused(cli, trained_copy):
    result = cli("plot", trained_copy.run_ids[0], "--out", "x", "--results-dir", trained_copy.root)
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: --out is for figures comparing several runs; one run's figures go to its "
        "plots/ folder (give more runs or --experiment to compare)\n"
    )
    assert not (trained_copy.folders[0] / "plots").exists()


def test_unknown_format_is_a_usage_error(cli, trained_copy):
    result = cli("plot", "-e", "tiny", "--format", "gif", "--results-dir", trained_copy.root)
    assert result.exit_code == 2
    assert "'gif' is not one of 'png', 'svg', 'pdf'" in result.stderr


def test_plot_help_shows_an_example(cli):
    result = cli("plot", "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout and "fsmrun plot --sweep tomita" in result.stdout


@pytest.fixture
def swept(trained_copy) -> Path:
    """sweep.json of the tiny experiment over seeds 0-2 beside trained_copy's runs: seeds 0
    and 1 are its two completed runs, seed 2 is to do."""
    spec = sweep_spec.inline_spec([str(trained_copy.toml)], {}, [0, 1, 2], {}, None)
    record = sweep.sweep_status(trained_copy.root, spec, sweep_spec.expand(spec), None)
    return sweep.write_record(trained_copy.root, record)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_of_a_sweep_draws_its_completed_runs_into_the_sweep_folder(cli, trained_copy, swept):
    record_bytes = swept.read_bytes()
    result = cli("plot", "--sweep", "tiny", "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    plots = swept.parent / "plots"
    assert result.stdout.splitlines() == [
        str(plots / "accuracy_by_length.png"),
        str(plots / "ood_accuracy.png"),
    ]
    # One experiment panel 3.3 x (2.4 + 0.35) in; bars max(3.3, 1 + 0.3 * 1 * 1) x 2.6 in.
    assert png_size(plots / "accuracy_by_length.png") == (660, 550)
    assert png_size(plots / "ood_accuracy.png") == (660, 520)
    for path in (plots / "accuracy_by_length.png", plots / "ood_accuracy.png"):
        pixels = imread(path)[..., :3]
        assert pixels.std() > 0.02 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert result.stderr.splitlines() == [
        "skipped 1 of 3 sweep cells: not completed (1 to do)",
        "2 figure(s) written",
    ]
    assert swept.read_bytes() == record_bytes  # sweep.json is only read
    assert sorted(p.name for p in swept.parent.iterdir()) == ["plots", "sweep.json"]
    assert not any((f / "plots").exists() for f in trained_copy.folders)


def test_a_sweep_id_as_run_plots_the_sweep_and_a_name_shared_with_runs_is_refused(
    cli, trained_copy, swept
):
    sweep_id = swept.parent.name
    out = trained_copy.root / "figs"
    result = cli("plot", sweep_id, "--out", out, "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(out / "accuracy_by_length.png"),
        str(out / "ood_accuracy.png"),
    ]
    shared = cli("plot", "tiny", "--results-dir", trained_copy.root)
    assert shared.exit_code == 2, shared.output
    assert shared.stderr == (
        "error: 'tiny' names a sweep and is a prefix of 2 runs; write --sweep tiny for the "
        "sweep, or more of the run id\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "nosuch"], "error: no sweep 'nosuch'; sweeps: tiny-"),
        (["--sweep", "tiny", "-e", "tiny"], "error: --sweep plots one sweep's runs; give it "),
        (["--sweep", "tiny", "--by", "colour"], "error: unknown group-by key 'colour'"),
    ],
)
def test_sweep_user_errors_exit_2_with_one_line(cli, trained_copy, swept, args, message):
    result = cli("plot", *args, "--results-dir", trained_copy.root)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert not (swept.parent / "plots").exists()


def test_a_sweep_without_completed_runs_is_refused(cli, trained_copy):
    spec = sweep_spec.inline_spec([str(trained_copy.toml)], {}, [5], {}, "later")
    sweep.write_record(
        trained_copy.root,
        sweep.sweep_status(trained_copy.root, spec, sweep_spec.expand(spec), None),
    )
    result = cli("plot", "--sweep", "later", "--results-dir", trained_copy.root)
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.startswith("error: sweep later-")
        and "no completed runs yet (1 to do)" in result.stderr
    )
