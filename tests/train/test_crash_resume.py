"""Kill -9 at every named fault point (FSMRUN_FAULT), resume, and end bit-identical to a run
never killed: weights and optimizer of last.pt and best.pt, history (clock fields aside) and
metrics.json (wall time aside). The run stops on patience before its epoch limit, so a resume
that forgot the stop decision would train on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fsmrun.runs.layout import iter_run_folders
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import TIMING_FIELDS
from fsmrun.train.checkpoint import read_ckpt
from fsmrun.train.history import read_history
from fsmrun.train.loop import resume_run, train_one_experiment

pytestmark = pytest.mark.slow

TRAIN_SCRIPT = """
import sys
from fsmrun.train.loop import train_one_experiment
from fsmrun.schemas.config import ExperimentConfig
exp = ExperimentConfig.model_validate_json(open(sys.argv[1]).read())
train_one_experiment(exp, device="cpu", results_root=sys.argv[2], progress=False)
"""

# (point, occurrence): each reached in the run below (the test checks the kill happened).
FAULTS = [
    ("version_claim", 1),  # nothing claimed yet: train again
    ("tmp_written", 2),  # run.json of the claim, before its folder exists
    ("tmp_written", 7),  # set-up, before the step-0 checkpoint
    ("before_dir_fsync", 12),  # the step-0 checkpoint installed, folder not yet synced
    ("tmp_written", 14),  # a mid-run checkpoint's temporary file
    ("prev_renamed", 4),  # the final last.pt: the old one is .prev, the new one not installed
    ("history_mid_line", 1),  # a torn history line
    ("index_txn", 1),  # creating the index
    ("final_eval", 1),  # after the final last.pt: resume must not train past the stop
    ("metrics_written", 1),
    ("index_txn", 3),  # run.json says completed; the index row is stale
]
PARALLEL = 4


def tiny() -> ExperimentConfig:
    # min_delta 100: only the first evaluation improves, so patience 1 stops after epoch 2
    # (8 steps) of 4; save_every 3 adds mid-epoch saves.
    return ExperimentConfig.model_validate(
        {
            "name": "crash",
            "seed": 3,
            "data": {
                "regex": "(a|b)*ab",
                "alphabet": "ab",
                "min_len": 1,
                "max_len": 8,
                "ood_min_len": 9,
                "ood_max_len": 10,
                "n_train": 64,
                "n_val": 16,
                "n_test": 16,
                "n_test_ood": 16,
            },
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.1},
            "train": {
                "epochs": 4,
                "batch_size": 16,
                "lr": 3e-3,
                "warmup_steps": 2,
                "log_every": 2,
                "save_every": 3,
                "patience": 1,
                "min_delta": 100.0,
            },
        }
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    result = train_one_experiment(tiny(), device="cpu", results_root=root, progress=False)
    assert result.stop_reason == "patience" and result.steps == 8
    return result.run_dir


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str]]:
    """{fault: (results folder, exit code, stderr)} of a training subprocess killed at each
    fault; they run side by side (most of their time is start-up and fsync)."""
    config = tmp_path_factory.mktemp("config") / "exp.json"
    config.write_text(tiny().model_dump_json())
    out, running = {}, []
    for point, occurrence in [*FAULTS, (None, None)]:
        if len(running) == PARALLEL or (point is None and running):
            for fault, root, proc in running:
                out[fault] = (root, proc.wait(timeout=300), proc.stderr.read())
            running = []
        if point is None:
            break
        fault = f"{point}:{occurrence}"
        root = tmp_path_factory.mktemp("killed") / "results"
        proc = subprocess.Popen(
            [sys.executable, "-c", TRAIN_SCRIPT, str(config), str(root)],
            env={**os.environ, "FSMRUN_FAULT": fault},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        running.append((fault, root, proc))
    return out


def checkpoint_state(run_dir: Path, name: str) -> dict:
    inner = read_ckpt(run_dir / "checkpoints" / name, fallback=False)[1]
    meta = json.loads(inner["meta"])
    meta.pop("wall_time_s")
    return {"model": inner["model"], "optimizer": inner["optimizer"], "meta": meta}


def history(run_dir: Path) -> list[dict]:
    return [
        r.model_dump(exclude=set(TIMING_FIELDS))
        for r in read_history(run_dir / "logs" / "history.jsonl")
    ]


def metrics(run_dir: Path) -> dict:
    doc = json.loads((run_dir / "metrics.json").read_text())
    doc.pop("wall_time_s")
    return doc


def assert_equal_states(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_equal_states(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_equal_states(x, y)
    else:
        assert a == b


@pytest.mark.parametrize(("point", "occurrence"), FAULTS, ids=[f"{p}:{n}" for p, n in FAULTS])
def test_a_kill_at_any_fault_point_resumes_to_the_uninterrupted_result(
    killed, reference, point, occurrence
):
    root, code, stderr = killed[f"{point}:{occurrence}"]
    assert code == 137, f"{point}:{occurrence} was not reached: {stderr[-2000:]}"
    folders = list(iter_run_folders(root))
    if not folders:  # killed before the run folder existed: nothing to resume
        result = train_one_experiment(tiny(), device="cpu", results_root=root, progress=False)
        run_dir = result.run_dir
    elif RunFolder(folders[0]).status() == "completed":  # killed after its last word
        run_dir = folders[0]
    else:
        (folder,) = folders
        assert RunFolder(folder).status() == "interrupted"  # the lock died with the process
        result = resume_run(folder, device="cpu", progress=False)
        assert result.status == "completed" and result.stop_reason == "patience"
        run_dir = result.run_dir
    assert RunFolder(run_dir).read_record().steps == 8
    assert run_dir.relative_to(root) == reference.relative_to(reference.parents[2])
    for name in ("last.pt", "best.pt"):
        assert_equal_states(checkpoint_state(run_dir, name), checkpoint_state(reference, name))
    assert history(run_dir) == history(reference)
    assert metrics(run_dir) == metrics(reference)
    leftovers = [
        p.name for p in root.rglob("*") if p.name.endswith((".tmp", ".new")) or ".claim-" in p.name
    ]
    assert leftovers == []
