"""`fsmrun report`: table, --json (schema-valid), --csv, --markdown over real runs."""

from __future__ import annotations

import csv
import io

from fsmrun.schemas.sweep import Report


def test_report_json_aggregates_the_seeds(cli, trained):
    result = cli("report", "tiny", "--json", "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json(result.stdout)
    (row,) = report.rows
    assert row.group == {
        "experiment": "tiny",
        "model.arch": "transformer",
        "model.pos_encoding": "rope",
    }
    assert row.n_runs == 2 and row.seeds == [0, 1]
    assert row.metrics["test.string_acc"].n == 2


def test_report_csv_and_markdown(cli, trained):
    root = trained.root
    result = cli(
        "report", "--by", "seed", "--metric", "test.class_acc", "--csv", "--results-dir", root
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["seed"] for r in rows] == ["0", "1"] and rows[0]["n"] == "1"
    md = cli("report", "--markdown", "--bins", "--results-dir", root).stdout.splitlines()
    assert md[0].startswith("| experiment | model.arch | model.pos_encoding | bin | metric | n |")
    assert any("| all |" in line for line in md) and len(md) > 3


def test_report_table_and_errors(cli, trained):
    result = cli("report", "--results-dir", trained.root)
    assert result.exit_code == 0 and "test.string_acc" in result.stdout
    bad = cli("report", "--metric", "test.accuracy", "--results-dir", trained.root)
    assert bad.exit_code == 2 and "string_acc" in bad.stderr
    none = cli("report", "nothing", "--results-dir", trained.root)
    assert none.exit_code == 2 and "neither a sweep" in none.stderr
