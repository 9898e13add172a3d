"""Bad sweep input gets one `error:` line naming the option used, before anything is built or
written; reports say when a sweep is unfinished and never pick one of several same-named sweeps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fsmrun.schemas.sweep import Report
from fsmrun.sweeps.coordinator import sweep_status, write_record
from fsmrun.sweeps.spec import expand, inline_spec


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", ""], "--seeds '' names no seed"),
        (["--seeds", "4-0"], "the range 4-0 runs backwards; write 0-4"),
        (["--seeds", "-"], "--seeds expects e.g. 0-4"),
        (["--grid", "model.arhc=lstm,gru"], "unknown key 'model.arhc' in --grid"),
        (["--grid", "model.arch"], "--grid expects key=v1,v2"),
        (["--grid", "train.lr=0.1,0.01", "--grid", "model.d_model=8,16", "--max-cells", "3"],
         "has 4 cells, over --max-cells 3; narrow the grid or pass --max-cells 4"),
    ],
)  # fmt: skip
def test_bad_sweep_options_get_one_error_line(cli, tiny_toml, tmp_path, args, message):
    result = cli("sweep", tiny_toml, *args, "--results-dir", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--set" not in result.stderr
    assert not (tmp_path / "r").exists()  # nothing written


def test_a_million_cell_grid_is_refused_at_once(cli, tmp_path):
    lrs = ",".join(f"0.{i:04d}" for i in range(1, 1001))
    start = time.monotonic()
    result = cli("sweep", "parity", "--grid", f"train.lr={lrs}", "--seeds", "0-999",
                 "--results-dir", tmp_path)  # fmt: skip
    assert time.monotonic() - start < 10
    assert result.exit_code == 2
    assert "has 1,000,000 cells, over --max-cells 10,000" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"name = \"x\"\nexperiments = [\"parity\"]\n# caf\xe9\n", "is not a UTF-8 text file"),
     (b"\x00\x01\x02\x03binary", "is a binary file")],
)  # fmt: skip
def test_spec_files_that_are_not_text_get_one_error_line(cli, tmp_path, content, message):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(content)
    result = cli("sweep", spec, "--results-dir", tmp_path / "r")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.output


def _record(root: Path, toml: Path, seeds: list[int], name: str) -> str:
    spec = inline_spec([str(toml)], {}, seeds, {}, name)
    cells = expand(spec)
    record = sweep_status(root, spec, cells, None, threads=1)
    write_record(root, record)
    return record.sweep_id


def test_report_of_an_unfinished_sweep_says_how_many_cells_are_done(cli, trained_copy):
    root = trained_copy.root
    sweep_id = _record(root, trained_copy.toml, [0, 1, 2], "partial")  # seeds 0, 1 trained
    result = cli("report", "partial", "--csv", "--results-dir", root)
    assert result.exit_code == 0, result.output
    assert f"note: sweep {sweep_id} is not finished: 2 of 3 cells done (1 to do)" in result.stderr
    assert result.stdout.count("test.string_acc") == 1  # one group of the two done seeds


def test_a_sweep_name_several_sweeps_share_is_listed_not_guessed(cli, trained_copy, tmp_path):
    root = trained_copy.root
    one = _record(root, trained_copy.toml, [0], "shared")
    two = _record(root, trained_copy.toml, [0, 1], "shared")
    for command in (["report", "shared"], ["sweep", "status", "shared"]):
        result = cli(*command, "--results-dir", root)
        assert result.exit_code == 2 and "2 sweeps match 'shared'" in result.stderr
        assert one in result.stderr and two in result.stderr
    assert cli("report", one, "--results-dir", root).exit_code == 0  # by id: fine
    spec = tmp_path / "shared.toml"  # the spec file of the second: picked by its hash
    spec.write_text(f'name = "shared"\nexperiments = ["{trained_copy.toml}"]\nseeds = [0, 1]\n')
    picked = cli("report", spec, "--json", "--results-dir", root)
    assert picked.exit_code == 0, picked.output
    assert [row.n_runs for row in Report.model_validate_json(picked.stdout).rows] == [2]
