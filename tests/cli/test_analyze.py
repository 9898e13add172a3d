"""`fsmrun analyze`: writes only <run>/analysis/ (schema-valid), prints a summary that `show`
repeats; runs that cannot be analysed are refused with one line and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fsmrun.analysis import analysis_figures
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.analysis import AnalysisReport, Comparison, Extraction
from fsmrun.schemas.sweep import Report

# The tiny CLI runs are barely trained: a small cap and no probes keep the test fast; the cap
# being reached is reported, not an error.
FAST = ("--max-states", "4", "--max-length", "12")


@pytest.fixture(autouse=True)
def no_graphviz(monkeypatch):
    monkeypatch.setattr(analysis_figures.shutil, "which", lambda name: None)


def _files(folder: Path) -> dict[str, float]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and "analysis" not in p.relative_to(folder).parts
    }


def test_analyze_writes_only_the_analysis_folder_and_show_repeats_the_summary(cli, trained_copy):
    run_id, folder = trained_copy.run_ids[0], trained_copy.folders[0]
    before = _files(folder)
    result = cli("analyze", run_id, *FAST, "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    assert _files(folder) == before  # nothing outside analysis/ touched
    report = AnalysisReport.model_validate_json((folder / "analysis/analysis.json").read_text())
    assert report.run_id == run_id and report.extraction.algorithm == "kv"
    assert report.extraction.num_states is not None
    assert report.comparison is not None and len(report.comparison.agreement) == 13
    assert [p.layer for p in report.probes.layers] == ["embedding", "block.0"]
    extracted = json.loads((folder / "analysis/extracted.json").read_text())
    assert extracted["format"] == "fsmrun-dfa-1"
    assert extracted["num_states"] == report.extraction.num_states
    assert sorted(report.figures) == ["agreement.png", "probes.png"]
    assert report.notices == [
        "machines figure skipped: Graphviz `dot` is not installed (install graphviz to draw "
        "the machines)"
    ]
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{run_id} (best checkpoint): extracted DFA with ")
    shown = cli("show", run_id, "--results-dir", trained_copy.root)
    assert shown.exit_code == 0, shown.output
    assert "analysis/analysis.json" in shown.stdout
    assert "extracted DFA with" in shown.stdout


def test_an_experiment_is_analysed_run_by_run_through_the_executor(cli, trained_copy):
    # "tiny" names no run but an experiment: every run of it (in this process: --workers 1).
    result = cli(
        "analyze",
        "tiny",
        *FAST,
        "--no-probes",
        "--no-figures",
        "--workers",
        "1",
        "--results-dir",
        trained_copy.root,
    )
    assert result.exit_code == 0, result.output
    assert "2 of 2 runs analysed, 0 up to date, 0 refused, 0 failed" in result.stderr
    for folder in trained_copy.folders:
        report = RunFolder(folder).read_analysis()
        assert report is not None and report.probes is None and report.figures == []


def _no_checkpoints(folder: Path) -> None:
    for path in (folder / "checkpoints").iterdir():
        path.unlink()


def _failed(folder: Path) -> None:
    RunFolder(folder).update_record(status="failed", error="RuntimeError: boom")


def _char_prediction(folder: Path) -> None:
    doc = json.loads((folder / "config.json").read_text())
    doc["data"]["task"] = "char_prediction"
    doc["train"]["monitor"] = "val.char_acc"
    (folder / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_no_checkpoints, "has no best checkpoint (checkpoints/best.pt); train or resume it"),
        (_failed, "failed (RuntimeError: boom); fix and retrain it"),
        (_char_prediction, "has task 'char_prediction', whose model has no trained class"),
    ],
)
def test_runs_that_cannot_be_analysed_are_refused_with_one_line(cli, trained_copy, spoil, message):
    run_id, folder = trained_copy.run_ids[0], trained_copy.folders[0]
    spoil(folder)
    before = _files(folder)
    result = cli("analyze", run_id, *FAST, "--results-dir", trained_copy.root)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: run {run_id} ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert not (folder / "analysis").exists()
    assert _files(folder) == before


def test_bad_options_are_refused_before_any_run_is_opened(cli, trained_copy):
    result = cli(
        "analyze", trained_copy.run_ids[0], "--max-states", "0", "--results-dir", trained_copy.root
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --max-states, --max-queries, --max-seconds")
    assert not (trained_copy.folders[0] / "analysis").exists()


def _fake_report(run_id: str, equivalent: bool) -> AnalysisReport:
    """An analysis.json as `analyze` writes it (numbers chosen by hand)."""
    return AnalysisReport(
        run_id=run_id,
        checkpoint="best",
        task="membership",
        extraction=Extraction(
            algorithm="kv",
            automaton_type="dfa",
            status="converged",
            num_states=3 if equivalent else 7,
            rounds=2,
            membership_queries=10,
            model_strings=100,
            model_calls=3,
            equivalence_words=50,
            fidelity=1.0,
            max_states=100,
            max_model_strings=200_000,
            max_seconds=120.0,
            seconds=0.5,
        ),
        comparison=Comparison(
            equivalent=equivalent,
            target_states=3,
            extracted_states=3 if equivalent else 7,
            difference=None if equivalent else "ab",
            target_output=None if equivalent else 1,
            extracted_output=None if equivalent else 0,
            model_output=None if equivalent else 0,
            model_right=None if equivalent else False,
            agreement=[1.0, 1.0, 1.0] if equivalent else [1.0, 1.0, 0.75],
            max_length=2,
        ),
        probes=None,
        seconds=1.0,
        figures=[],
        notices=[],
    )


def test_ls_and_report_read_the_analysis_numbers(cli, trained_copy):
    for run_id, folder, equivalent in zip(
        trained_copy.run_ids, trained_copy.folders, (True, False), strict=True
    ):
        RunFolder(folder).write_analysis(_fake_report(run_id, equivalent), None, None)
    root = trained_copy.root
    result = cli("report", "tiny", "--metric", "analysis.equivalent", "--metric",
                 "analysis.min_agreement", "--json", "--results-dir", root)  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = Report.model_validate_json(result.stdout).rows
    # One seed of two extracted the target: the mean of the 0/1 values is that fraction.
    assert row.metrics["analysis.equivalent"].mean == 0.5
    assert row.metrics["analysis.min_agreement"].min == 0.75
    listed = cli("ls", "--field", "analysis.extracted_states", "--results-dir", root)
    assert listed.exit_code == 0, listed.output
    assert "analysis.extracted_states" in listed.stdout
    assert "3.0" in listed.stdout and "7.0" in listed.stdout
    bad = cli("ls", "--field", "analysis.colour", "--results-dir", root)
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: unknown analysis field 'analysis.colour'")


def test_a_name_that_is_no_run_experiment_or_sweep_is_refused(cli, trained_copy):
    result = cli("analyze", "nope", "--results-dir", trained_copy.root)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no run, experiment with runs or sweep named 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_default_checkpoint_is_the_one_the_run_reports(cli, trained_copy):
    # A run that reports its final parameters (train.evaluate_checkpoint = last) is analysed
    # at last.pt: with best.pt gone the old fixed default (best) would refuse it.
    run_id, folder = trained_copy.run_ids[0], trained_copy.folders[0]
    doc = json.loads((folder / "config.json").read_text())
    doc["train"]["evaluate_checkpoint"] = "last"
    (folder / "config.json").write_text(json.dumps(doc))
    (folder / "checkpoints/best.pt").unlink()
    result = cli("analyze", run_id, *FAST, "--no-probes", "--no-figures",
                 "--results-dir", trained_copy.root)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{run_id} (last checkpoint): extracted DFA with ")
    report = RunFolder(folder).read_analysis()
    assert report is not None and report.checkpoint == "last"
    refused = cli("analyze", run_id, "--checkpoint", "best", "--results-dir", trained_copy.root)
    assert refused.exit_code == 2
    assert "has no best checkpoint (checkpoints/best.pt)" in refused.stderr


def _without_times(report: AnalysisReport) -> dict:
    doc = report.model_dump()
    doc.pop("seconds")
    doc["extraction"].pop("seconds")
    return doc


def test_several_runs_go_through_the_pool_like_the_serial_path_and_skip_what_is_done(
    cli, trained_copy, tiny_toml
):
    import torch

    from fsmrun.analysis.batch import analyze_many
    from fsmrun.analysis.extract import ExtractionBudget
    from fsmrun.analysis.run_analysis import AnalyzeOptions
    from fsmrun.sweeps.executors import SerialExecutor
    from fsmrun.sweeps.pool import LocalExecutor

    from .conftest import train_tiny

    root = trained_copy.root
    folders = list(trained_copy.folders)
    folders += [train_tiny(tiny_toml, root, "--seed", str(seed))[1] for seed in (2, 3)]
    # The options FAST and --no-figures give on the command line below.
    options = AnalyzeOptions(budget=ExtractionBudget(max_states=4), max_length=12, figures=False)
    threads = torch.get_num_threads()
    serial: list = []
    try:  # one torch thread in both paths: the same bits
        analyze_many(folders, options, SerialExecutor(), serial.append, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert [(o.index, o.status) for o in serial] == [(i, "completed") for i in range(4)]
    first = [_without_times(RunFolder(f).read_analysis()) for f in folders]
    pooled: list = []
    analyze_many(folders, options, LocalExecutor(2, threads=1), pooled.append, force=True)
    assert sorted((o.index, o.status) for o in pooled) == [(i, "completed") for i in range(4)]
    assert [_without_times(RunFolder(f).read_analysis()) for f in folders] == first

    # Again without --force: all four are up to date (same settings, newer than best.pt).
    again = cli("analyze", "tiny", *FAST, "--no-figures", "--workers", "2", "--results-dir", root)
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert "0 of 4 runs analysed, 4 up to date, 0 refused, 0 failed" in again.stderr

    # One checkpoint newer than its analysis, one run failed, one whose weights do not fit
    # its config (a crash): each ends on its own, the others carry on.
    (folders[0] / "checkpoints/best.pt").touch()
    _failed(folders[1])
    doc = json.loads((folders[2] / "config.json").read_text())
    doc["model"]["d_model"] = 8
    (folders[2] / "config.json").write_text(json.dumps(doc))
    mixed = cli("analyze", "tiny", *FAST, "--no-figures", "--workers", "2", "--results-dir", root)
    assert mixed.exit_code == 1, mixed.output
    lines = mixed.stderr.splitlines()
    assert len(lines) == 6  # the head, one line per run, the counts
    progress = sorted(line.split("] ", 1)[1].split(":")[0:2] for line in lines[1:-1])
    ids = [RunFolder(f).read_record().run_id for f in folders]
    assert progress == sorted(
        [[ids[0], " analysed"], [ids[1], " refused"], [ids[2], " failed"],
         [ids[3], " up to date, skipped"]]
    )  # fmt: skip
    assert sorted(line.split("]")[0] for line in lines[1:-1]) == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert lines[-1].startswith("1 of 4 runs analysed, 1 up to date, 1 refused, 1 failed in ")
    assert mixed.stdout.startswith(f"{ids[0]} (best checkpoint): extracted DFA with ")
