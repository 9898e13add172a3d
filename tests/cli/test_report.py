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


def test_report_of_a_sweep_prints_each_published_value_with_its_check(cli, tiny_toml, tmp_path):
    spec = tmp_path / "pub.toml"
    spec.write_text(
        f'experiments = ["{tiny_toml}"]\n'
        '[[published]]\nexperiment = "tiny"\nmetric = "test.string_acc"\nvalue = 0.9\n'
        'source = "Paper A, Table 1"\n'
        '[[published]]\nexperiment = "tiny"\nmetric = "test.string_acc"\nvalue = 0.8\n'
        'source = "Paper B, Table 3"\nchecked = "primary"\n'
    )
    root = tmp_path / "results"
    ran = cli("sweep", spec, "--set", "train.epochs=1", "--workers", "1", "--results-dir", root)
    assert ran.exit_code == 0, ran.output
    table = cli("report", "pub", "--results-dir", root)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    unchecked = next(line for line in lines if "Paper A" in line)
    assert "0.900 (max) ?" in unchecked and "unchecked" in unchecked
    primary = next(line for line in lines if "Paper B" in line)
    assert "0.800 (max) " in primary and "?" not in primary and "primary" in primary
    assert lines[-1].startswith("? unchecked: typed without the paper's table at hand")
    report = Report.model_validate_json(
        cli("report", "pub", "--json", "--results-dir", root).stdout
    )
    assert [(p.published.value, p.published.checked, p.n_runs) for p in report.published] == [
        (0.9, "unchecked", 1),
        (0.8, "primary", 1),
    ]


def test_a_long_report_table_shows_its_first_groups_and_says_how_many_more(
    cli, trained, monkeypatch
):
    from fsmrun.cli import report as report_cli

    monkeypatch.setattr(report_cli, "TABLE_GROUPS", 1)
    short = cli("report", "--by", "seed", "--results-dir", trained.root)
    assert short.exit_code == 0, short.output
    assert "1 more group(s): --all shows every one" in short.stdout
    every = cli("report", "--by", "seed", "--all", "--results-dir", trained.root)
    assert every.exit_code == 0 and "more group" not in every.stdout
    rows = [line for line in short.stdout.splitlines() if "test.string_acc" in line]
    assert (
        len(rows) == 1
        and len([line for line in every.stdout.splitlines() if "test.string_acc" in line]) == 2
    )
    csv_rows = cli("report", "--by", "seed", "--csv", "--results-dir", trained.root).stdout
    assert len(csv_rows.strip().splitlines()) == 1 + 2 * 2  # header, 2 seeds x 2 metrics
