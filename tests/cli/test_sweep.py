"""`fsmrun sweep` (inline form and specs) and `fsmrun sweep status`; Ctrl-C and carrying on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsmrun.schemas.sweep import SweepRecord


def test_inline_sweep_runs_every_cell_once_and_status_counts_them(cli, tiny_toml, tmp_path):
    args = ["sweep", tiny_toml, "--grid", "model.arch=transformer,lstm", "--seeds", "0-1",
            "--set", "train.epochs=1", "--workers", "1", "--results-dir", tmp_path]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "4 cell(s) run, 0 skipped" in result.stderr
    assert "4 done, 0 running, 0 interrupted, 0 failed, 0 to do" in result.stdout
    # not a terminal: one plain line per cell, with done / total and the time left
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert "; 1/4 done, ~" in progress[0] and " left" in progress[0]
    assert progress[-1].endswith("; 4/4 done")
    again = cli(*args)
    assert "0 cell(s) run, 4 skipped" in again.stderr, again.output
    status = cli("sweep", "status", "tiny", "--json", "--results-dir", tmp_path)
    record = SweepRecord.model_validate_json(status.stdout)
    assert record.counts["done"] == 4 and len({c.config_hash for c in record.cells}) == 4
    assert record.threads == (os.cpu_count() or 1)  # --workers 1: every core, fixed at start
    assert record.cells[3].overrides == {"train.epochs": 1, "model.arch": "lstm", "seed": 1}
    table = cli("sweep", "status", "tiny", "--results-dir", tmp_path)
    assert table.exit_code == 0 and "model.arch=lstm seed=1" in table.stdout
    assert "train.epochs" not in table.stdout  # shared by every cell: left out


def test_sweep_lists_suites_and_refuses_bad_input(cli, tmp_path):
    listed = cli("sweep", "--list")
    assert "tomita" in listed.stdout and "deletang_regular" in listed.stdout
    bad = cli("sweep", "parity", "--grid", "model.arhc=lstm", "--results-dir", tmp_path)
    assert bad.exit_code == 2 and "did you mean arch" in bad.stderr
    missing = cli("sweep", "status", "nosuch", "--results-dir", tmp_path)
    assert missing.exit_code == 2 and missing.stderr.startswith("error:")


def _ctrl_c_as_in_a_shell() -> None:
    """The sweep's SIGINT as an interactive shell gives it: handled, not blocked. A child
    inherits its parent's ignored signals and signal mask, and on a fresh clone the whole
    suite's process had left SIGINT so that the sweep never saw the Ctrl-C (it ran to the
    end and exited 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_stops_the_pool_cleanly_and_the_next_run_carries_on(tiny_toml, tmp_path):
    fsmrun = Path(sys.executable).parent / "fsmrun"
    # 60 epochs (~4 s a cell): with 15 a cell took 1.1 s on an idle machine, and the sweep
    # could end between the first checkpoint and the Ctrl-C.
    args = [str(fsmrun), "sweep", str(tiny_toml), "--seeds", "0-1", "--set", "train.epochs=60",
            "--set", "train.patience=null", "--workers", "2",
            "--results-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_shell)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("tiny/*/v1/checkpoints/last.pt")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "carry on" in err
    record = SweepRecord.model_validate_json(next(tmp_path.glob("sweeps/*/sweep.json")).read_text())
    assert record.counts["interrupted"] >= 1 and record.counts["done"] < 2
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 done" in again.stdout
    resumed = [
        json.loads(p.read_text())["times_resumed"] for p in tmp_path.glob("tiny/*/v*/run.json")
    ]
    assert len(resumed) == 2 and max(resumed) == 1  # carried on in the same folders


def test_a_spec_file_with_cases_runs_and_its_status_is_found_by_spec(cli, tiny_toml, tmp_path):
    spec = tmp_path / "study.toml"
    spec.write_text(
        f'name = "study"\nexperiments = ["{tiny_toml}"]\nseeds = [0]\n'
        'cases = [{ "model.arch" = "lstm" }, { "model.arch" = "transformer", '
        '"model.pos_encoding" = "none" }]\n[set]\n"train.epochs" = 1\n'
    )
    root = tmp_path / "r"
    result = cli("sweep", spec, "--workers", "1", "--results-dir", root)
    assert result.exit_code == 0, result.output
    assert "2 done" in result.stdout and (root / "sweeps").is_dir()
    (folder,) = [p for p in (root / "sweeps").iterdir() if not p.name.startswith(".")]
    assert folder.name.startswith("study-") and len(folder.name) == len("study-") + 12
    status = cli("sweep", "status", spec, "--json", "--results-dir", root)
    record = SweepRecord.model_validate_json(status.stdout)
    assert [c.overrides["model.arch"] for c in record.cells] == ["lstm", "transformer"]
    assert record.counts["done"] == 2


def test_a_sweep_with_failed_cells_exits_1_after_running_them_all(cli, tiny_toml, tmp_path):
    args = ["sweep", tiny_toml, "--grid", "train.lr=1e30,0.01",
            "--set", "train.epochs=1", "--workers", "1", "--results-dir", tmp_path]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert "1 done, 0 running, 0 interrupted, 1 failed, 0 to do" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 cell(s) failed;") and "--retry-failed" in last
    assert "Traceback" not in result.output


def test_a_second_coordinator_exits_2_naming_the_first(cli, tiny_toml, tmp_path):
    from fsmrun.sweeps.coordinator import sweep_id_for
    from fsmrun.sweeps.spec import expand, inline_spec

    spec = inline_spec([str(tiny_toml)], {}, [0], {}, None)
    sweep_id = sweep_id_for(spec, expand(spec))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from fsmrun.sweeps.coordinator import sweep_lock\n"
         "with sweep_lock(Path(sys.argv[1]), sys.argv[2]):\n"
         "    print('locked', flush=True); time.sleep(60)",
         str(tmp_path), sweep_id],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = cli("sweep", tiny_toml, "--workers", "1", "--results-dir", tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: sweep {sweep_id} is being run by process {holder.pid}; wait or stop it"
    )
    assert not (tmp_path / "tiny").exists()
