"""`fsmrun ls`: table, JSON lines, filters, sorting and --reindex."""

from __future__ import annotations

import json

from fsmrun.schemas.registry import RunRow


def rows_of(result) -> list[RunRow]:
    assert result.exit_code == 0, result.output
    return [RunRow.model_validate(json.loads(line)) for line in result.stdout.splitlines()]


def test_ls_table_shows_each_run_with_its_columns(cli, trained):
    result = cli("ls", "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    for header in ("run id", "status", "steps", "best val", "test acc", "ood acc", "audited"):
        assert header in result.stdout
    for run_id in trained.run_ids:
        assert run_id in result.stdout
    assert "completed" in result.stdout and "val.string_acc" in result.stdout


def test_ls_json_lines_are_schema_valid_rows(cli, trained):
    rows = rows_of(cli("ls", "--json", "--results-dir", trained.root))
    assert [r.run_id for r in rows] == trained.run_ids  # default order: created
    assert all(r.status == "completed" and r.steps == 8 and r.device == "cpu" for r in rows)
    assert all(r.test_string_acc is not None for r in rows)


def test_ls_filters_by_experiment_and_status(cli, trained):
    root = trained.root
    assert len(rows_of(cli("ls", "tiny", "--json", "--results-dir", root))) == 2
    assert rows_of(cli("ls", "regex_a", "--json", "--results-dir", root)) == []
    assert len(rows_of(cli("ls", "--status", "completed", "--json", "--results-dir", root))) == 2
    assert rows_of(cli("ls", "--status", "running", "--json", "--results-dir", root)) == []


def test_ls_sorts_by_a_field_in_either_direction(cli, trained):
    root = trained.root
    down = rows_of(cli("ls", "--sort", "created", "--desc", "--json", "--results-dir", root))
    assert [r.run_id for r in down] == trained.run_ids[::-1]
    up = rows_of(cli("ls", "--sort", "run_id", "--json", "--results-dir", root))
    assert [r.run_id for r in up] == sorted(trained.run_ids)


def test_ls_rejects_an_unknown_status_or_sort_key(cli, trained):
    result = cli("ls", "--status", "done", "--results-dir", trained.root)
    assert result.exit_code == 2 and "completed" in result.stderr, result.output
    result = cli("ls", "--sort", "test_acc", "--results-dir", trained.root)
    assert result.exit_code == 2 and "test_string_acc" in result.stderr, result.output


def test_ls_reindex_rebuilds_a_deleted_index(cli, trained_copy):
    root = trained_copy.root
    (root / "registry.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (root / f"registry.sqlite{suffix}").unlink(missing_ok=True)
    result = cli("ls", "--reindex", "--json", "--results-dir", root)
    assert [r.run_id for r in rows_of(result)] == trained_copy.run_ids
    assert "reindexed 2 run(s)" in result.stderr
    assert (root / "registry.sqlite").is_file()


def test_ls_of_a_missing_results_dir_creates_nothing(cli, tmp_path):
    result = cli("ls", "--results-dir", tmp_path / "none")
    assert result.exit_code == 0, result.output
    assert "no runs" in result.stderr and not (tmp_path / "none").exists()


def test_an_unreadable_run_is_skipped_with_one_warning_line(cli, trained_copy):
    broken = trained_copy.folders[1] / "run.json"
    broken.write_text("{not json")
    result = cli("ls", "--reindex", "--json", "--results-dir", trained_copy.root)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(trained_copy.folders[1]) in warnings[0]


def test_ls_shows_arch_seed_a_chosen_field_and_what_varies(cli, trained):
    result = cli("ls", "--field", "model.d_model", "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    for text in ("arch", "seed", "model.d_model", "transformer/rope", "16"):
        assert text in result.stdout
    assert "varying: seed" in result.stdout


def test_ls_at_80_columns_drops_columns_instead_of_eliding(trained):
    from rich.console import Console

    from fsmrun.cli.ls import _configs, runs_table
    from fsmrun.core.index import RegistryIndex

    rows = RegistryIndex(trained.root).rows()
    console = Console(width=80, record=True)
    console.print(runs_table(rows, _configs(trained.root, rows), [], 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    for run_id in trained.run_ids:
        assert run_id in text
    for header in ("status", "arch", "seed", "test acc"):
        assert header in text


def test_ls_rejects_an_unknown_field(cli, trained):
    result = cli("ls", "--field", "model.width", "--results-dir", trained.root)
    assert result.exit_code == 2 and "d_model" in result.stderr
