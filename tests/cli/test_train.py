"""`fsmrun train`: the run folder, its files, versions, overrides and --overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fsmrun.base.overrides import apply_overrides, collect_overrides
from fsmrun.experiments import load_experiment
from fsmrun.lang.fsm import DFA
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import EnvInfo, HistoryRecord, Metrics, RunRecord
from fsmrun.train.checkpoint import KEY_MODEL, read_ckpt

RUN_FILES = [
    "config.json",
    "run.json",
    "env.json",
    "metrics.json",
    "logs/history.jsonl",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "fsm.json",
    "fsm.dot",
]


def test_train_prints_run_id_folder_and_summary(trained):
    run_id, folder = trained.run_ids[0], trained.folders[0]
    assert run_id.startswith("tiny-") and run_id.endswith("-v1")
    assert folder == trained.root / "tiny" / run_id.split("-")[1] / "v1"


def test_train_writes_every_design_file_schema_valid(trained):
    folder = trained.folders[0]
    for name in RUN_FILES:
        assert (folder / name).is_file(), name
    config = ExperimentConfig.model_validate_json((folder / "config.json").read_text())
    assert config == load_experiment(str(trained.toml))
    record = RunRecord.model_validate_json((folder / "run.json").read_text())
    assert record.status == "completed" and record.steps == 8 and record.hashes is not None
    env = EnvInfo.model_validate_json((folder / "env.json").read_text())
    assert env.device == "cpu" and env.seed == 0
    metrics = Metrics.model_validate_json((folder / "metrics.json").read_text())
    assert metrics.run_id == record.run_id and metrics.steps == 8 and metrics.epochs == 2
    lines = (folder / "logs" / "history.jsonl").read_text().splitlines()
    history = [HistoryRecord.model_validate_json(line) for line in lines]
    assert [h.kind for h in history].count("eval") == 2 and history[-1].kind == "stop"
    dfa = DFA.from_json((folder / "fsm.json").read_text())
    assert dfa.num_states == 3 and dfa.accepts("aab") and not dfa.accepts("aba")
    assert (folder / "fsm.dot").read_text().startswith("digraph")
    for name in ("last.pt", "best.pt"):
        _, inner = read_ckpt(folder / "checkpoints" / name, fallback=False)
        assert "embed" in " ".join(inner[KEY_MODEL])


def test_seed_flag_makes_a_different_config_hash(trained):
    hashes = [RunFolder(f).read_record().config_hash for f in trained.folders]
    assert hashes[0] != hashes[1]
    assert RunFolder(trained.folders[1]).read_record().run_id == trained.run_ids[1]


def test_set_and_flags_override_the_config(tiny_toml):
    exp = load_experiment(str(tiny_toml))
    overrides = collect_overrides(
        ["train.lr=0.01", "model.pos_encoding=learned", "train.patience=null", "seed=3"],
        {"train.epochs": 5, "seed": 7, "train.batch_size": None},
    )
    new = apply_overrides(exp, overrides)
    assert new.train.lr == 0.01 and new.model.pos_encoding == "learned"
    assert new.train.patience is None and new.train.epochs == 5
    assert new.seed == 7  # the explicit flag wins over --set
    assert new.train.batch_size == exp.train.batch_size


def test_set_keeps_text_fields_as_text(tiny_toml):
    exp = load_experiment(str(tiny_toml))
    new = apply_overrides(exp, collect_overrides(["data.alphabet=12", "data.regex=1"], {}))
    assert new.data.alphabet == "12" and new.data.regex == "1"


def test_overwrite_replaces_the_newest_version(cli, trained_copy):
    root, old = trained_copy.root, trained_copy.folders[0]
    created = RunFolder(old).read_record().created
    result = cli("train", trained_copy.toml, "--results-dir", root, "--device", "cpu",
                 "--overwrite", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"run:       {trained_copy.run_ids[0]}" in result.stdout
    assert sorted(p.name for p in old.parent.iterdir()) == ["v1"]
    assert RunFolder(old).read_record().created > created


def _train_process(toml: Path, root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FSMRUN_RESULTS_DIR": str(root)}
    cmd = [sys.executable, "-m", "fsmrun", "train", str(toml), "--device", "cpu", "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_two_processes_started_together_get_different_versions(tiny_toml, tmp_path):
    root = tmp_path / "results"
    procs = [_train_process(tiny_toml, root) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    run_ids = sorted(
        line.split(":", 1)[1].strip()
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("run:")
    )
    assert [r[-3:] for r in run_ids] == ["-v1", "-v2"]
    hash_dir = next((root / "tiny").iterdir())
    assert sorted(p.name for p in hash_dir.iterdir()) == ["v1", "v2"]
    for version in ("v1", "v2"):
        assert json.loads((hash_dir / version / "run.json").read_text())["status"] == "completed"


FSIZE_LIMITED = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (32768, 32768))
sys.argv = ["fsmrun", *sys.argv[1:]]
runpy.run_module("fsmrun", run_name="__main__")
"""


@pytest.mark.skipif(os.name != "posix", reason="needs RLIMIT_FSIZE")
def test_a_file_size_limit_exits_1_naming_the_checkpoint(tiny_toml, tmp_path):
    # 32 KiB holds every file of the run but a checkpoint (about 70 KiB).
    root = tmp_path / "results"
    argv = ["train", str(tiny_toml), "--results-dir", str(root), "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-c", FSIZE_LIMITED, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    (folder,) = root.glob("tiny/*/v1")
    assert proc.stderr.splitlines()[-1] == (
        f"error: cannot write {folder / 'checkpoints' / 'last.pt'}: File too large"
    )
    assert "Traceback" not in proc.stderr
    record = RunFolder(folder).read_record()
    assert record.status == "failed" and "File too large" in (record.error or "")
    assert [p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".new"))] == []
