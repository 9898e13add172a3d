"""Run folders, versions, run files, liveness, run lookup and the SQLite index."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HASH_A, HASH_B, claim_empty_run_folder, make_record, write_record

from fsmrun.base.io import WriteError, atomic_write_json
from fsmrun.runs import index as index_module
from fsmrun.runs import layout as registry
from fsmrun.runs.index import RunIndex
from fsmrun.runs.layout import (
    AmbiguousRun,
    ResultsFolderError,
    RunNotFound,
    claim_run_folder,
    default_results_root,
    iter_run_folders,
    resolve_run,
    run_id_for,
    runs_of_config,
)
from fsmrun.runs.lock import lock_held
from fsmrun.runs.run_folder import (
    HEARTBEAT_TIMEOUT_S,
    RunFolder,
    RunFolderError,
    effective_status,
)
from fsmrun.schemas.config import DataConfig, ExperimentConfig
from fsmrun.schemas.records import (
    CheckpointEval,
    EarlyStopState,
    Metrics,
    RunRecord,
    SplitMetrics,
)


def split(string_acc: float) -> SplitMetrics:
    return SplitMetrics(
        n_strings=100,
        loss=0.5,
        nll=0.4,
        token_acc=0.9,
        next_valid=0.95,
        class_acc=0.9,
        class_baseline=0.5,
        string_acc=string_acc,
        string_baseline=0.5,
        state_acc=0.8,
    )


def make_metrics(record: RunRecord, test_acc: float, ood_acc: float | None) -> Metrics:
    best = CheckpointEval(
        step=8,
        epoch=1,
        val=split(0.97),
        test=split(test_acc),
        test_ood=split(ood_acc) if ood_acc is not None else None,
    )
    return Metrics(
        run_id=record.run_id,
        experiment=record.experiment,
        monitor="val.string_acc",
        stop_reason="max_epochs",
        steps=12,
        epochs=2,
        wall_time_s=3.5,
        early_stop=EarlyStopState(monitor="val.string_acc", mode="max", best_value=0.97),
        best=best,
        last=best,
    )


def new_run(
    root: Path,
    experiment: str = "regex_a",
    config_hash: str = HASH_A,
    *,
    test_acc: float | None = None,
    ood_acc: float | None = None,
    **fields,
) -> Path:
    """Allocate a folder and write run.json (and metrics.json when test_acc is given)."""
    folder, version = claim_empty_run_folder(root, experiment, config_hash)
    record = make_record(experiment, config_hash, version, **fields)
    write_record(folder, record)
    if test_acc is not None:
        atomic_write_json(folder / "metrics.json", make_metrics(record, test_acc, ood_acc))
    return folder


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------- folders


def test_results_root_is_value_then_env_then_results(monkeypatch, tmp_path):
    monkeypatch.setenv("FSMRUN_RESULTS_DIR", str(tmp_path / "env"))
    assert default_results_root(tmp_path / "given") == tmp_path / "given"
    assert default_results_root(None) == tmp_path / "env"
    monkeypatch.delenv("FSMRUN_RESULTS_DIR")
    assert default_results_root(None) == Path("results")


def test_run_id_is_experiment_hash12_version():
    assert run_id_for("regex_a", HASH_A, 3) == "regex_a-a1b2c3d4e5f6-v3"


def test_versions_are_allocated_v1_v2_v3(tmp_path):
    got = [claim_empty_run_folder(tmp_path, "regex_a", HASH_A) for _ in range(3)]
    hash_dir = tmp_path / "regex_a" / "a1b2c3d4e5f6"
    assert got == [(hash_dir / "v1", 1), (hash_dir / "v2", 2), (hash_dir / "v3", 3)]
    assert all(folder.is_dir() for folder, _ in got)
    assert (
        claim_empty_run_folder(tmp_path, "regex_a", HASH_B)[1] == 1
    )  # another config starts at v1


def test_allocation_retries_past_versions_claimed_after_listing(tmp_path, monkeypatch):
    for _ in range(3):
        claim_empty_run_folder(tmp_path, "regex_a", HASH_A)
    # Another process claimed v1..v3 between our listing and our mkdir.
    monkeypatch.setattr(registry, "list_versions", lambda hash_dir: [])
    assert claim_empty_run_folder(tmp_path, "regex_a", HASH_A)[1] == 4


PROCESSES, ALLOCATIONS = 4, 40
_ALLOCATE_WHEN_STARTED = """
import sys, time
from pathlib import Path
from fsmrun.runs.layout import claim_run_folder, version_of
root, ready, start = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not start.exists():
    time.sleep(0.0005)
for _ in range(int(sys.argv[5])):
    folder = claim_run_folder(root, "regex_a", sys.argv[4])
    folder.release_lock()
    print(version_of(folder.path))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_processes_started_together_get_different_versions(tmp_path, attempt):
    # Each process allocates repeatedly so that their claims overlap in time; a max+1
    # allocation without an atomic claim hands out duplicates here.
    claim_empty_run_folder(tmp_path, "regex_a", HASH_A)  # v1 exists: everyone's first guess is v2
    start = tmp_path / "start"
    procs = []
    for i in range(PROCESSES):
        ready = tmp_path / f"ready{i}"
        args = (tmp_path, ready, start, HASH_A, ALLOCATIONS)
        argv = [sys.executable, "-c", _ALLOCATE_WHEN_STARTED, *map(str, args)]
        procs.append((ready, subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    start.touch()
    versions = [int(v) for _, proc in procs for v in proc.communicate(timeout=60)[0].split()]
    assert sorted(versions) == list(range(2, 2 + PROCESSES * ALLOCATIONS))


def test_overwrite_replaces_the_newest_version_only(tmp_path):
    v1 = new_run(tmp_path)
    v2 = new_run(tmp_path)
    folder, version = claim_empty_run_folder(tmp_path, "regex_a", HASH_A, overwrite=True)
    assert (folder, version) == (v2, 2)
    assert [p.name for p in v2.iterdir()] == [".lock"]  # the old tree is gone
    assert (v1 / "run.json").is_file()
    assert sorted(p.name for p in v2.parent.iterdir()) == ["v1", "v2"]  # no trash left


def test_overwrite_without_a_run_claims_v1(tmp_path):
    folder, version = claim_empty_run_folder(tmp_path, "regex_a", HASH_A, overwrite=True)
    assert version == 1 and folder == tmp_path / "regex_a" / "a1b2c3d4e5f6" / "v1"


def test_overwrite_refuses_a_run_whose_writer_holds_its_lock(tmp_path):
    folder = new_run(tmp_path, status="running", pid=os.getpid(), heartbeat=time.time() - 500)
    with (
        RunFolder(folder).lock(),  # a stopped writer keeps its lock past the heartbeat timeout
        pytest.raises(RunFolderError, match=r"being written by process \d+ on .*; wait for it"),
    ):
        claim_empty_run_folder(tmp_path, "regex_a", HASH_A, overwrite=True)
    assert claim_empty_run_folder(tmp_path, "regex_a", HASH_A, overwrite=True)[1] == 1


def test_root_under_a_regular_file_gives_registry_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ResultsFolderError, match="a_file.*--results-dir"):
        claim_empty_run_folder(blocker / "results", "regex_a", HASH_A)
    with pytest.raises(ResultsFolderError, match="a_file.*--results-dir"):
        RunIndex(blocker / "results").reindex()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_root_gives_registry_error(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(ResultsFolderError, match="results"):
            claim_empty_run_folder(root, "regex_a", HASH_A)
    finally:
        root.chmod(0o700)


# ---------------------------------------------------------------------------- files


def test_run_record_round_trips_and_updates(tmp_path):
    folder = new_run(tmp_path)
    assert RunFolder(folder).read_record() == make_record("regex_a", HASH_A, 1)
    updated = RunFolder(folder).update_record(status="failed", error="boom")
    assert RunFolder(folder).read_record() == updated
    assert (updated.status, updated.error, updated.steps) == ("failed", "boom", 10)


def test_folder_without_or_with_a_broken_run_json_is_a_clear_error(tmp_path):
    with pytest.raises(RunFolderError, match="not a run folder"):
        RunFolder(tmp_path).read_record()
    (tmp_path / "run.json").write_text('{"run_id": 3}')
    with pytest.raises(RunFolderError, match=r"run.json is not a valid RunRecord"):
        RunFolder(tmp_path).read_record()


def test_load_run_bundles_record_config_env_and_metrics(tmp_path):
    folder = new_run(tmp_path, test_acc=0.9)
    config = ExperimentConfig(name="regex_a", data=DataConfig(regex="a*", alphabet="ab"))
    atomic_write_json(folder / "config.json", config)
    info = RunFolder(folder).load()
    assert info.run_id == "regex_a-a1b2c3d4e5f6-v1"
    assert info.config == config
    assert info.env is None  # not written
    assert info.metrics == RunFolder(folder).read_metrics()
    assert info.metrics.best.test.string_acc == 0.9
    assert info.status == "completed"


# ---------------------------------------------------------------------------- liveness


def test_running_record_is_interrupted_once_its_process_is_gone():
    now = time.time()
    alive = make_record("regex_a", HASH_A, 1, status="running", pid=os.getpid(), heartbeat=now)
    assert effective_status(alive) == "running"
    assert effective_status(alive.model_copy(update={"pid": dead_pid()})) == "interrupted"
    stale = now - HEARTBEAT_TIMEOUT_S - 1
    assert effective_status(alive.model_copy(update={"heartbeat": stale})) == "interrupted"
    elsewhere = alive.model_copy(update={"pid": dead_pid(), "hostname": "another-host"})
    assert effective_status(elsewhere) == "running"  # cannot see its pid; heartbeat is fresh
    done = alive.model_copy(update={"status": "completed", "pid": dead_pid(), "heartbeat": 0.0})
    assert effective_status(done) == "completed"


def test_mark_interrupted_if_dead_persists_only_dead_runs(tmp_path):
    live = new_run(tmp_path, status="running", pid=os.getpid(), heartbeat=time.time())
    dead = new_run(tmp_path, status="running", pid=dead_pid(), heartbeat=time.time())
    writer = RunFolder(live)
    writer.acquire_lock()
    assert RunFolder(live).mark_interrupted_if_dead().status == "running"
    assert RunFolder(dead).mark_interrupted_if_dead().status == "interrupted"
    assert RunFolder(dead).read_record().status == "interrupted"
    assert RunFolder(dead).read_record().pid is None
    assert RunFolder(live).read_record().status == "running"
    writer.release_lock()


# ---------------------------------------------------------------------------- lookup


def test_resolve_by_id_prefix_and_folder(tmp_path, monkeypatch):
    v1 = new_run(tmp_path)
    v2 = new_run(tmp_path)
    other = new_run(tmp_path, "other", HASH_B)
    assert resolve_run(tmp_path, "regex_a-a1b2c3d4e5f6-v2") == v2
    assert resolve_run(tmp_path, "oth") == other
    assert resolve_run(tmp_path, str(v1)) == v1
    assert resolve_run(tmp_path, "regex_a/a1b2c3d4e5f6/v1") == tmp_path / "regex_a/a1b2c3d4e5f6/v1"
    monkeypatch.chdir(v2.parent)
    assert resolve_run(tmp_path, "v2") == Path("v2")


def test_ambiguous_prefix_lists_the_candidates(tmp_path):
    new_run(tmp_path)
    new_run(tmp_path)
    new_run(tmp_path, "other", HASH_B)
    with pytest.raises(AmbiguousRun) as err:
        resolve_run(tmp_path, "regex_a-a1b2")
    assert err.value.candidates == ["regex_a-a1b2c3d4e5f6-v1", "regex_a-a1b2c3d4e5f6-v2"]
    assert "regex_a-a1b2c3d4e5f6-v1" in str(err.value)


def test_unknown_run_suggests_close_ids(tmp_path):
    new_run(tmp_path)
    with pytest.raises(RunNotFound, match="did you mean: regex_a-a1b2c3d4e5f6-v1") as err:
        resolve_run(tmp_path, "regex_b-a1b2c3d4e5f6-v1")
    assert err.value.suggestions == ["regex_a-a1b2c3d4e5f6-v1"]
    with pytest.raises(RunNotFound, match="not a run folder"):
        resolve_run(tmp_path, str(tmp_path / "regex_a"))
    with pytest.raises(RunNotFound, match="no runs under"):
        resolve_run(tmp_path / "empty", "regex_a")


# ---------------------------------------------------------------------------- index


def populate(root: Path) -> RunIndex:
    """Three runs, indexed as the loop would: at start (running), then at the end."""
    index = RunIndex(root)
    folders = [
        new_run(root, status="running", pid=os.getpid(), heartbeat=time.time()),
        new_run(root, "other", HASH_B, status="running", pid=os.getpid(), heartbeat=time.time()),
        new_run(root, status="running", pid=os.getpid(), heartbeat=time.time()),
    ]
    for folder in folders:
        index.upsert_folder(folder)
    finished = [("completed", 0.9, 0.6), ("failed", None, None), ("completed", 0.95, None)]
    for folder, (status, test_acc, ood_acc) in zip(folders, finished, strict=True):
        record = RunFolder(folder).update_record(status=status, pid=None)
        if test_acc is not None:
            atomic_write_json(folder / "metrics.json", make_metrics(record, test_acc, ood_acc))
        index.upsert_folder(folder)
    return index


def test_index_rows_carry_record_and_metrics(tmp_path):
    index = populate(tmp_path)
    rows = {row.run_id: row for row in index.rows()}
    assert list(rows) == [  # by created, then run id
        "other-ffee00112233-v1",
        "regex_a-a1b2c3d4e5f6-v1",
        "regex_a-a1b2c3d4e5f6-v2",
    ]
    first = rows["regex_a-a1b2c3d4e5f6-v1"]
    assert first.folder == "regex_a/a1b2c3d4e5f6/v1"
    assert (first.status, first.steps, first.epochs, first.wall_time_s) == ("completed", 12, 2, 3.5)
    assert (first.best_val_metric, first.best_val_value) == ("val.string_acc", 0.97)
    assert (first.test_string_acc, first.test_ood_string_acc) == (0.9, 0.6)
    assert first.stop_reason == "max_epochs" and first.amp is False and first.pid is None
    failed = rows["other-ffee00112233-v1"]
    assert (failed.status, failed.steps, failed.test_string_acc) == ("failed", 10, None)


def test_index_filters_and_sorts(tmp_path):
    index = populate(tmp_path)
    assert [r.version for r in index.rows(experiment="regex_a")] == [1, 2]
    assert [r.experiment for r in index.rows(status="failed")] == ["other"]
    by_acc = index.rows(sort="test_string_acc", descending=True)
    assert [r.test_string_acc for r in by_acc] == [0.95, 0.9, None]  # missing values last
    by_created = index.rows(sort="created", descending=True)
    assert [r.created for r in by_created] == [1002.0, 1001.0, 1001.0]
    with pytest.raises(ResultsFolderError, match="did you mean test_string_acc.*valid: run_id"):
        index.rows(sort="test_string_ac")
    with pytest.raises(ResultsFolderError, match="valid: running, completed, failed, interrupted"):
        index.rows(status="done")


def test_reindex_from_folders_equals_incremental_index(tmp_path):
    index = populate(tmp_path)
    incremental = index.rows()
    assert index.reindex() == 3
    assert index.rows() == incremental
    assert RunIndex(tmp_path).rows() == incremental


def test_deleted_index_is_rebuilt_from_folders(tmp_path):
    incremental = populate(tmp_path).rows()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'registry.sqlite'}{suffix}").unlink(missing_ok=True)
    assert RunIndex(tmp_path).rows() == incremental


@pytest.mark.parametrize("damage", ["garbage", "wrong_schema", "old_version"])
def test_damaged_index_is_rebuilt_from_folders(tmp_path, damage):
    incremental = populate(tmp_path).rows()
    path = tmp_path / "registry.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(b"\x00not a database at all\xff" * 200)
    else:
        path.unlink()
        conn = sqlite3.connect(path)
        if damage == "wrong_schema":
            conn.execute("CREATE TABLE runs (run_id TEXT, colour TEXT)")
            conn.execute("PRAGMA user_version = 1")
        else:  # the right table, written by an index format that is not ours
            conn.execute(index_module._CREATE)
            conn.execute("PRAGMA user_version = 0")
        conn.commit()
        conn.close()
    assert RunIndex(tmp_path).rows() == incremental


def test_index_damaged_while_open_is_rebuilt(tmp_path):
    index = populate(tmp_path)
    incremental = index.rows()
    with sqlite3.connect(tmp_path / "registry.sqlite") as conn:
        conn.execute("DROP TABLE runs")
    assert index.rows() == incremental


def test_running_row_with_a_dead_process_is_listed_as_interrupted(tmp_path):
    index = RunIndex(tmp_path)
    folder = new_run(tmp_path, status="running", pid=dead_pid(), heartbeat=time.time())
    index.upsert_folder(folder)
    (row,) = index.rows()
    assert row.status == "interrupted"
    assert index.rows(status="running") == []
    assert RunFolder(folder).read_record().status == "running"  # listing does not write run.json


def test_running_row_follows_the_heartbeat_in_run_json(tmp_path):
    index = RunIndex(tmp_path)
    folder = new_run(tmp_path, status="running", pid=os.getpid(), heartbeat=time.time() - 500)
    (folder / ".lock").unlink()  # no lock to probe (an older run): the heartbeat decides
    index.upsert_folder(folder)
    RunFolder(folder).update_record(heartbeat=time.time(), steps=99)  # the loop beats; no upsert
    (row,) = index.rows()
    assert (row.status, row.steps) == ("running", 99)


def test_liveness_comes_from_the_lock_where_it_can_be_probed(tmp_path):
    index = RunIndex(tmp_path)
    # A stale heartbeat, but the writer holds the lock (a stopped process): running.
    folder = new_run(tmp_path, status="running", pid=os.getpid(), heartbeat=time.time() - 500)
    index.upsert_folder(folder)
    with RunFolder(folder).lock():
        assert [row.status for row in index.rows()] == ["running"]
        assert RunFolder(folder).status() == "running"
    # A fresh heartbeat of a live pid, but nobody holds the lock: the writer is gone.
    RunFolder(folder).update_record(heartbeat=time.time())
    assert [row.status for row in index.rows()] == ["interrupted"]
    assert RunFolder(folder).status() == "interrupted"


def test_rows_of_deleted_folders_are_dropped(tmp_path):
    index = populate(tmp_path)
    (tmp_path / "other" / "ffee00112233" / "v1" / "run.json").unlink()
    assert [r.experiment for r in index.rows()] == ["regex_a", "regex_a"]


def test_unopenable_index_falls_back_to_the_folders(tmp_path):
    folder = new_run(tmp_path, test_acc=0.5)
    (tmp_path / "registry.sqlite").mkdir()  # sqlite cannot open a directory
    (row,) = RunIndex(tmp_path).rows()
    assert (row.run_id, row.test_string_acc) == (RunFolder(folder).read_record().run_id, 0.5)


def test_runs_of_config_lists_its_readable_versions_oldest_first(tmp_path):
    other = HASH_A[:12] + "9" * 52  # same 12-character folder, another config
    first = new_run(tmp_path, config_hash=HASH_A, status="failed")
    new_run(tmp_path, config_hash=other)
    broken = new_run(tmp_path, config_hash=HASH_A)
    (broken / "run.json").write_text("{not json")
    third = new_run(tmp_path, config_hash=HASH_A)
    new_run(tmp_path, "regex_b", HASH_A)
    runs = runs_of_config(tmp_path, "regex_a", HASH_A)
    assert [(f.path, r.version, r.status) for f, r in runs] == [
        (first, 1, "failed"),
        (third, 4, "completed"),
    ]
    assert runs_of_config(tmp_path, "regex_a", HASH_B) == []


# ---------------------------------------------------------------------------- atomic claims


def test_a_claim_appears_with_its_files_and_its_lock_held(tmp_path):
    def files(folder, version):
        write_record(folder.path, make_record("regex_a", HASH_A, version))

    folder = claim_run_folder(tmp_path, "regex_a", HASH_A, files)
    try:
        assert folder.path == tmp_path / "regex_a" / "a1b2c3d4e5f6" / "v1"
        assert RunFolder(folder.path).read_record().run_id == "regex_a-a1b2c3d4e5f6-v1"
        assert lock_held(folder.path) is True  # this process holds the lock
        second = claim_run_folder(tmp_path, "regex_a", HASH_A, files)
        assert RunFolder(second.path).read_record().version == 2  # run.json rewritten for v2
        second.release_lock()
    finally:
        folder.release_lock()
    assert sorted(p.name for p in folder.path.parent.iterdir()) == ["v1", "v2"]


def test_a_claim_killed_before_its_rename_leaves_nothing_visible(tmp_path):
    hash_dir = tmp_path / "regex_a" / "a1b2c3d4e5f6"
    hash_dir.mkdir(parents=True)
    killed = hash_dir / ".claim-0123456789ab"  # what a kill during the claim leaves
    killed.mkdir()
    (killed / ".lock").touch()
    write_record(killed, make_record("regex_a", HASH_A, 1))
    assert list(iter_run_folders(tmp_path)) == []
    with pytest.raises(RunNotFound):
        resolve_run(tmp_path, "regex_a-a1b2c3d4e5f6-v1")
    folder, version = claim_empty_run_folder(tmp_path, "regex_a", HASH_A)
    assert version == 1 and sorted(p.name for p in hash_dir.iterdir()) == ["v1"]


def test_a_leftover_empty_version_folder_is_taken_by_the_next_claim(tmp_path, monkeypatch):
    hash_dir = tmp_path / "regex_a" / "a1b2c3d4e5f6"
    (hash_dir / "v1").mkdir(parents=True)  # left by an older fsmrun killed in its claim
    monkeypatch.setattr(registry, "list_versions", lambda hash_dir: [])
    folder, version = claim_empty_run_folder(tmp_path, "regex_a", HASH_A)
    assert version == 1 and (folder / ".lock").is_file()


def test_a_claim_whose_files_cannot_be_written_names_the_file_and_leaves_nothing(tmp_path):
    def disk_full(folder, version):
        raise WriteError(28, "No space left on device", str(folder.run_json))

    with pytest.raises(WriteError, match="run.json: No space left on device"):
        claim_run_folder(tmp_path, "regex_a", HASH_A, disk_full)
    assert list((tmp_path / "regex_a" / "a1b2c3d4e5f6").iterdir()) == []


def test_check_writable_creates_nothing_and_names_what_blocks(tmp_path):
    assert registry.check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # checked through the nearest existing parent
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsFolderError, match=r"cannot create .* \(.*file is not a folder\)"):
        registry.check_writable(tmp_path / "file" / "results")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ResultsFolderError, match=r"\(.*link is a broken link\)"):
        registry.check_writable(tmp_path / "link" / "results")
