"""`fsmrun show`: one run by id, unique prefix or folder; ambiguity lists the candidates."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("how", ["id", "prefix", "folder"])
def test_show_finds_a_run_by_id_prefix_or_folder(cli, trained, how):
    run_id, folder = trained.run_ids[0], trained.folders[0]
    ref = {"id": run_id, "prefix": run_id[: len("tiny-") + 6], "folder": str(folder)}[how]
    result = cli("show", ref, "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    for section in ("run.json", "config.json", "env.json", "metrics.json"):
        assert section in result.stdout
    assert run_id in result.stdout and trained.run_ids[1] not in result.stdout
    assert "(a|b)*ab" in result.stdout and "torch" in result.stdout
    assert "val.string_acc" in result.stdout


def test_ambiguous_prefix_lists_the_candidates(cli, trained):
    result = cli("show", "tiny-", "--results-dir", trained.root)
    assert result.exit_code == 2, result.output
    assert "matches 2 runs" in result.stderr
    for run_id in trained.run_ids:
        assert run_id in result.stderr
