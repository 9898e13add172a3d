"""`fsmrun ls` and `report` on a large registry: newest first with a limit and a line saying
how many more, filters by config field, tag, date and sweep, and report from the index."""

from __future__ import annotations

import json

from fsmrun.base.io import atomic_write_json
from fsmrun.schemas.sweep import Report


def table_ids(stdout: str, run_ids: list[str]) -> list[str]:
    """Run ids in the order the table shows them."""
    return sorted((i for i in run_ids if i in stdout), key=stdout.index)


def test_ls_shows_the_newest_first_and_says_how_many_more(cli, trained):
    result = cli("ls", "--limit", "1", "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    assert table_ids(result.stdout, trained.run_ids) == [trained.run_ids[1]]
    assert result.stderr == "1 more, --all to list every run\n"
    every = cli("ls", "--all", "--limit", "1", "--results-dir", trained.root)
    assert table_ids(every.stdout, trained.run_ids) == trained.run_ids[::-1]
    assert every.stderr == ""


def test_ls_where_since_and_their_errors(cli, trained):
    root = trained.root
    one = cli("ls", "--json", "--where", "seed=1", "--results-dir", root)
    assert [json.loads(line)["run_id"] for line in one.stdout.splitlines()] == trained.run_ids[1:]
    none = cli("ls", "--json", "--where", "model.arch=lstm", "--since", "1h", "--results-dir", root)
    assert none.exit_code == 0 and none.stdout == ""
    bad = cli("ls", "--where", "model.colour=red", "--results-dir", root)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: unknown key 'model.colour'")
    assert bad.stdout == ""
    late = cli("ls", "--since", "last week", "--results-dir", root)
    assert late.exit_code == 2 and "--since expects a date" in late.stderr


def test_ls_and_report_filter_by_a_tag_beside_the_run(cli, trained_copy):
    atomic_write_json(trained_copy.folders[0] / "labels.json", {"tags": {"paper": "fig3"}})
    root = trained_copy.root
    tagged = cli("ls", "--json", "--where", "tag.paper=fig3", "--results-dir", root)
    assert [json.loads(line)["run_id"] for line in tagged.stdout.splitlines()] == [
        trained_copy.run_ids[0]
    ]
    report = cli("report", "--json", "--where", "tag.paper=fig3", "--results-dir", root)
    (row,) = Report.model_validate_json(report.stdout).rows
    assert row.run_ids == [trained_copy.run_ids[0]]


def test_report_reads_an_edited_run_and_groups_by_language(cli, trained_copy):
    root = trained_copy.root
    metrics = trained_copy.folders[1] / "metrics.json"
    doc = json.loads(metrics.read_text())
    doc["best"]["test"]["string_acc"] = 0.25
    atomic_write_json(metrics, doc)
    result = cli("report", "--by", "language,seed", "--json", "--results-dir", root)
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json(result.stdout)
    assert [r.group for r in report.rows] == [
        {"language": "tiny", "seed": 0},
        {"language": "tiny", "seed": 1},
    ]
    assert report.rows[1].metrics["test.string_acc"].mean == 0.25


def test_sweep_status_shows_cells_not_done_first_up_to_the_limit():
    from fsmrun.cli.sweep import shown_cells
    from fsmrun.schemas.sweep import SweepCell

    statuses = ["done", "failed", "done", "todo", "done", "running"]
    cells = [
        SweepCell(index=i, source="x", experiment="x", overrides={}, config_hash="h", status=s)
        for i, s in enumerate(statuses)
    ]
    assert [c.index for c in shown_cells(cells, 4)] == [0, 1, 3, 5]  # 3 not done, 1 done
    assert [c.index for c in shown_cells(cells, 2)] == [1, 3]
    assert shown_cells(cells, None) == cells and shown_cells(cells, 6) == cells
