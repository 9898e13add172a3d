"""`fsmrun ls`: table, JSON lines, filters, sorting and --reindex."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from fsmrun.schemas.run_row import RunRow


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
    from fsmrun.runs.index import RunIndex

    rows = RunIndex(trained.root).rows()
    console = Console(width=80, record=True)
    console.print(runs_table(rows, _configs(trained.root, rows), [], 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    for run_id in trained.run_ids:
        assert run_id in text
    for header in ("status", "seed", "test acc", "ood acc"):  # accuracies go last
        assert header in text


def test_ls_rejects_an_unknown_field(cli, trained):
    result = cli("ls", "--field", "model.width", "--results-dir", trained.root)
    assert result.exit_code == 2 and "d_model" in result.stderr


def files_under(root) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_ls_of_an_unknown_experiment_says_so_and_names_close_ones(cli, trained):
    result = cli("ls", "tinyy", "--results-dir", trained.root)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: unknown experiment 'tinyy': no runs of it")
    assert "did you mean tiny?" in result.stderr and result.stdout == ""


def test_ls_of_a_builtin_experiment_without_runs_says_there_are_none(cli, trained):
    result = cli("ls", "parity", "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"no runs of parity under {trained.root}\n"


def test_ls_of_a_file_says_it_is_not_a_folder(cli, tmp_path):
    (tmp_path / "results").write_text("")
    result = cli("ls", "--results-dir", tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert f"the results folder {tmp_path / 'results'} is not a folder" in result.stderr


def test_ls_of_an_empty_folder_creates_nothing(cli, tmp_path):
    result = cli("ls", "--results-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []


def test_ls_writes_nothing_so_it_lists_a_read_only_results_folder(cli, trained_copy):
    root = trained_copy.root
    before = files_under(root)
    rows = rows_of(cli("ls", "--json", "--results-dir", root))
    assert [r.run_id for r in rows] == trained_copy.run_ids
    assert files_under(root) == before  # no -wal/-shm either: the index was opened immutable


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_ls_lists_a_results_folder_it_cannot_write(cli, trained_copy):
    root = trained_copy.root
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    try:
        rows = rows_of(cli("ls", "--json", "--results-dir", root))
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    assert [r.run_id for r in rows] == trained_copy.run_ids


def test_ls_shows_a_run_folder_copied_in_after_the_index_was_built(cli, trained_copy, tmp_path):
    root, second = trained_copy.root, trained_copy.folders[1]
    aside = tmp_path / "aside"
    shutil.move(second, aside)
    assert len(rows_of(cli("ls", "--reindex", "--json", "--results-dir", root))) == 1
    shutil.copytree(aside, second)  # copied in: the index does not know it
    rows = rows_of(cli("ls", "--json", "--results-dir", root))
    assert [r.run_id for r in rows] == trained_copy.run_ids
    assert rows[1].test_string_acc is not None


def test_ls_drops_a_run_whose_folder_was_deleted_without_writing_the_index(cli, trained_copy):
    shutil.rmtree(trained_copy.folders[0])
    before = files_under(trained_copy.root)
    rows = rows_of(cli("ls", "--json", "--results-dir", trained_copy.root))
    assert [r.run_id for r in rows] == trained_copy.run_ids[1:]
    assert files_under(trained_copy.root) == before


def test_ls_opens_the_index_read_only(cli, trained_copy, monkeypatch):
    import sqlite3

    import fsmrun.runs.index as index_module

    opened, connect = [], sqlite3.connect

    def read_only_connect(database, *args, **kwargs):
        opened.append(str(database))
        assert kwargs.get("uri") and ("mode=ro" in database or "immutable=1" in database)
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(index_module.sqlite3, "connect", read_only_connect)
    rows = rows_of(cli("ls", "--json", "--results-dir", trained_copy.root))
    assert [r.run_id for r in rows] == trained_copy.run_ids and len(opened) == 1


@pytest.mark.parametrize("damage", [b"", b"\x00garbage\xff" * 100])
def test_ls_of_a_damaged_index_lists_the_folders_with_one_warning(cli, trained_copy, damage):
    root = trained_copy.root
    (root / "registry.sqlite").write_bytes(damage)
    before = files_under(root)
    result = cli("ls", "--json", "--results-dir", root)
    assert [r.run_id for r in rows_of(result)] == trained_copy.run_ids
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1, result.stderr
    assert all(w.startswith("warning: run index") and "--reindex" in w for w in warnings)
    assert files_under(root) == before


def test_varying_line_names_many_fields_under_one_parent_once():
    from fsmrun.cli.ls import varying_line

    table = [f"data.dfa.transitions.q{i}.{s}" for i in range(3) for s in "ab"]  # 6 fields
    assert varying_line(["seed", *table, "model.arch"]) == (
        "varying: seed, data.dfa.transitions.* (6 fields), model.arch"
    )
    few = table[:5]  # below COLLAPSED_FROM: each named
    assert varying_line(few) == "varying: " + ", ".join(few)
    assert varying_line([]) == "varying: none"
