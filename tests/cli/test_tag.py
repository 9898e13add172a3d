"""Labels: tags and a note from `train --tag/--note` and `fsmrun tag`, kept in labels.json
beside the run (its other files unchanged), shown by `show`, filtered by `ls --tag`, in the
index and `ls --json`, and grouped by `report --by tag.KEY`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fsmrun.runs.labels import matches_tags, parse_tags


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _rows(cli, root: Path, *args: str) -> list[dict]:
    result = cli("ls", "--json", "--results-dir", root, *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_train_writes_tags_and_note_beside_the_run(cli, tiny_toml, tmp_path):
    result = cli("train", tiny_toml, "--results-dir", tmp_path, "--device", "cpu",
                 "--no-progress", "--tag", "paper=v2", "--tag", "size=tiny",
                 "--note", "the first try")  # fmt: skip
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.glob("tiny/*/v1")
    assert json.loads((folder / "labels.json").read_text()) == {
        "tags": {"paper": "v2", "size": "tiny"},
        "note": "the first try",
    }
    assert [row["tags"] for row in _rows(cli, tmp_path)] == [{"paper": "v2", "size": "tiny"}]


def test_tagging_a_completed_run_changes_only_labels_json_and_its_index_row(cli, trained_copy):
    root, folder, run_id = trained_copy.root, trained_copy.folders[0], trained_copy.run_ids[0]
    before = _hashes(folder)
    result = cli("tag", run_id, "paper=v2", "lr=high", "--note", "figure 3",
                 "--results-dir", root)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "tags:      lr=high, paper=v2\nnote:      figure 3\n"
    after = _hashes(folder)
    assert after.pop("labels.json")
    assert after == before
    changed = cli("tag", run_id, "lr=low", "--remove", "paper", "--results-dir", root)
    assert changed.stdout == "tags:      lr=low\nnote:      figure 3\n"
    tags = {row["run_id"]: row["tags"] for row in _rows(cli, root)}
    assert tags == {run_id: {"lr": "low"}, trained_copy.run_ids[1]: {}}
    # the index row is what ls reads: rebuilt from the folders it says the same
    assert {r["run_id"]: r["tags"] for r in _rows(cli, root, "--reindex")} == tags


def test_show_ls_and_report_use_the_tags(cli, trained_copy):
    root, (first, second) = trained_copy.root, trained_copy.run_ids
    assert cli("tag", first, "group=a", "--results-dir", root).exit_code == 0
    assert cli("tag", second, "group=b", "--note", "seed one", "--results-dir", root).exit_code == 0
    shown = cli("show", second, "--results-dir", root).stdout
    assert "labels.json" in shown and "tag group  b" in shown and "note       seed one" in shown
    assert [r["run_id"] for r in _rows(cli, root, "--tag", "group=b")] == [second]
    assert [r["run_id"] for r in _rows(cli, root, "--tag", "group=")] == [first, second]
    assert _rows(cli, root, "--tag", "group=c") == []
    report = json.loads(cli("report", "--by", "tag.group", "--json", "--results-dir", root).stdout)
    assert [(row["group"], row["run_ids"]) for row in report["rows"]] == [
        ({"tag.group": "a"}, [first]),
        ({"tag.group": "b"}, [second]),
    ]
    where = json.loads(
        cli("report", "--where", "tag.group=b", "--json", "--results-dir", root).stdout
    )
    assert [row["run_ids"] for row in where["rows"]] == [[second]]


def test_tags_parse_and_match():
    assert parse_tags(["b=2", "a = 1 ", "c="]) == {"a": "1", "b": "2", "c": ""}
    assert matches_tags({"a": "1", "b": "2"}, {"a": "1"})
    assert matches_tags({"a": "1"}, {"a": ""})
    assert not matches_tags({"a": "1"}, {"a": "2"})
    assert not matches_tags({}, {"a": ""})
