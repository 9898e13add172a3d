"""`fsmrun audit-determinism`: repeated and resumed runs compare identical on CPU."""

from __future__ import annotations

import json

import pytest

from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.cli import AuditReport


@pytest.mark.slow
def test_audit_with_resume_check_passes_and_marks_existing_runs(cli, trained_copy):
    root = trained_copy.root
    result = cli("audit-determinism", trained_copy.toml, "--runs", "2", "--resume-check",
                 "--json", "--device", "cpu", "--results-dir", root)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = AuditReport.model_validate_json(result.stdout)
    assert report.passed and report.tolerance is None and report.max_steps == 8
    assert {c.compared for c in report.checks} == {"run 1 vs run 2", "run 1 vs resumed"}
    assert {c.check for c in report.checks} == {
        "config_hash", "corpus_hash", "init_weights", "batch_order",
        "history", "final_weights", "metrics",
    }  # fmt: skip
    assert all(c.status == "identical" for c in report.checks)
    assert [r.label for r in report.runs] == ["run 1", "run 2", "resumed"]
    assert report.runs[2].stopped_at_step not in (None, 4, 8)
    # the report file, and the seed-0 run (same config) marked verified; seed 1 untouched
    files = list((root / "audits").glob("tiny-*.json"))
    assert len(files) == 1 and f"report: {files[0]}" in result.stderr
    assert AuditReport.model_validate_json(files[0].read_text()) == report
    assert report.verified_runs == [trained_copy.run_ids[0]]
    assert RunFolder(trained_copy.folders[0]).read_record().audit_verified is True
    assert RunFolder(trained_copy.folders[1]).read_record().audit_verified is None
    listed = cli("ls", "--json", "--results-dir", root)
    verified = {json.loads(line)["run_id"]: json.loads(line)["audit_verified"]
                for line in listed.stdout.splitlines()}  # fmt: skip
    assert verified == {trained_copy.run_ids[0]: True, trained_copy.run_ids[1]: None}


def test_audit_table_has_one_row_per_check(cli, tiny_toml, tmp_path):
    result = cli("audit-determinism", tiny_toml, "--max-steps", "2", "--device", "cpu",
                 "--results-dir", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "run 1 vs run 2" in line]
    assert len(rows) == 7 and all("identical" in row for row in rows)
    assert "passed" in result.stderr
    assert not (tmp_path / "tiny").exists()  # the audit runs live in a scratch folder


def test_audit_needs_two_runs(cli, tiny_toml, tmp_path):
    result = cli("audit-determinism", tiny_toml, "--runs", "1", "--results-dir", tmp_path)
    assert result.exit_code == 2 and "--runs" in result.stderr, result.output
