"""`fsmrun diff RUN RUN`: the config fields that differ."""

from __future__ import annotations

import json


def test_diff_names_the_fields_that_differ(cli, trained):
    a, b = trained.run_ids
    result = cli("diff", a, b, "--results-dir", trained.root)
    assert result.exit_code == 0, result.output
    assert "seed" in result.stdout and "model.d_model" not in result.stdout
    doc = json.loads(cli("diff", a, b, "--json", "--results-dir", trained.root).stdout)
    assert doc == {"seed": [0, 1]}


def test_diff_of_a_run_with_itself_says_identical(cli, trained):
    a = trained.run_ids[0]
    result = cli("diff", a, a, "--results-dir", trained.root)
    assert result.exit_code == 0 and "identical" in result.stderr


def test_diff_of_an_unknown_run_is_a_user_error(cli, trained):
    result = cli("diff", "nope", trained.run_ids[0], "--results-dir", trained.root)
    assert result.exit_code == 2 and result.stderr.startswith("error:")
