"""At 80 columns `ls`, `eval`, `report` and `show` keep their numbers whole: no line past the
width, no elided cell, the accuracy columns kept while the others are left out, and a line
that names what was left out. Rendered on a fixed-width console."""

from __future__ import annotations

from rich.console import Console

from fsmrun.analysis.report import build_report
from fsmrun.analysis.report_source import collect_runs
from fsmrun.cli._render import bins_table_fit, dropped_line, split_table_fit
from fsmrun.cli.ls import _configs, runs_table_fit
from fsmrun.cli.report import report_table_fit
from fsmrun.runs.index import RunIndex
from fsmrun.runs.run_folder import RunFolder


def _render(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def _fits(text: str, width: int = 80) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text and "..." not in text


def test_ls_keeps_ids_and_accuracies_and_says_what_it_left_out(trained):
    rows = RunIndex(trained.root).rows()
    table, dropped = runs_table_fit(rows, _configs(trained.root, rows), [], 80)
    text = _render(table)
    _fits(text)
    header = text.splitlines()[1]
    assert [h.strip() for h in header.strip("┃").split("┃")] == [
        "run id", "seed", "status", "test acc", "ood acc",
    ]  # fmt: skip
    for row in rows:
        assert f"{row.test_string_acc:.4f}" in text and f"{row.test_ood_string_acc:.4f}" in text
    assert dropped == [
        "experiment", "config", "arch", "created", "device", "steps", "resumed", "best val",
        "wall", "audited",
    ]  # fmt: skip
    _, none_dropped = runs_table_fit(rows, _configs(trained.root, rows), [], 400)
    assert none_dropped == []


def test_eval_and_show_tables_keep_accuracies_beside_baselines(trained):
    metrics = RunFolder(trained.folders[0]).read_metrics()
    splits = {"val": metrics.best.val, "test": metrics.best.test, "test_ood": metrics.best.test_ood}
    table, dropped = split_table_fit("overall", splits, 80)
    text = _render(table)
    _fits(text)
    for split in splits.values():
        assert f"{split.string_acc:.4f} ({split.string_baseline:.4f})" in text
        assert f"{split.class_acc:.4f} ({split.class_baseline:.4f})" in text
    assert [name.replace("\n", " ") for name in dropped] == [
        "next valid (base)", "token acc", "state acc", "nll", "loss",
    ]  # fmt: skip
    bins, _ = bins_table_fit("test", metrics.best.test, 80)
    _fits(_render(bins))
    assert dropped_line(dropped, 80) == (
        "left out to fit 80 columns: next valid (base), token acc, state acc, nll, loss (a "
        "wider terminal or --json shows them)"
    )
    assert dropped_line([], 80) is None


def test_report_at_80_columns_moves_shared_groups_to_the_title_and_keeps_baselines(trained):
    report = build_report(collect_runs(trained.root))
    table, dropped = report_table_fit(report, 80)
    text = _render(table)
    _fits(text)
    assert text.startswith("experiment=tiny, model.arch=transformer, model.pos_encoding=rope;")
    (row,) = report.rows
    stats = row.metrics["test.string_acc"]
    assert f"{stats.mean:.3f}" in text and f"{stats.baseline:.3f}" in text
    assert "baseline" not in dropped and "mean" not in dropped
    wide, nothing = report_table_fit(report, 200)
    assert nothing == [] and "model.arch" in _render(wide, 200)  # groups as columns with room


def test_the_commands_print_the_left_out_line(cli, trained):
    # CliRunner output is not a terminal: the data console is DATA_WIDTH wide, so this checks
    # the wiring with a width where everything fits (no line), and the line itself above.
    for args in (["ls"], ["report"], ["show", trained.run_ids[0]]):
        result = cli(*args, "--results-dir", trained.root)
        assert result.exit_code == 0, result.output
        assert "left out to fit" not in result.stdout
