"""`fsmrun plot`: paths of the figures on stdout, notices on stderr, user errors exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsmrun.core.plots import run_figures


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
        ([], "error: give a run (id, prefix or folder), several runs, or --experiment EXP"),
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
    assert "Example:" in result.stdout and "fsmrun plot" in result.stdout
