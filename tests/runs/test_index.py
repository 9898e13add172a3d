"""The index at scale: stored config, metrics and tags; folders changed, copied in or deleted
are found by directory mtimes; filters, sort and limit in SQL agree with the same test in
Python; reindex in worker processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from fsmrun.base.io import atomic_write_json
from fsmrun.runs import index_folders, index_known, index_read, index_scan
from fsmrun.runs import layout as layout_module
from fsmrun.runs.index import RunIndex
from fsmrun.runs.index_query import RunQuery, parse_since, parse_where
from fsmrun.runs.layout import ResultsFolderError, resolve_run, run_id_for
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from fsmrun.schemas.records import CheckpointEval, EarlyStopState, Metrics, RunRecord, SplitMetrics

OLD = time.time() - 3600  # folders this old have settled: their mtimes are trusted


def split(acc: float) -> SplitMetrics:
    return SplitMetrics(
        n_strings=10, loss=0.5, nll=0.4, token_acc=0.9, next_valid=0.95, class_acc=0.9,
        class_baseline=0.5, string_acc=acc, string_baseline=0.25, state_acc=0.8,
    )  # fmt: skip


def write_run(
    root: Path, name: str, arch: str, lr: float, seed: int, acc: float, created: float,
    version: int = 1, tags: dict | None = None,
) -> Path:  # fmt: skip
    """A completed run folder whose files are what training writes."""
    config = ExperimentConfig(
        name=name, seed=seed, data=DataConfig(regex="(a|b)*ab", alphabet="ab"),
        model=ModelConfig(arch=arch), train=TrainConfig(lr=lr),
    )  # fmt: skip
    chash = f"{abs(hash((name, arch, lr, seed))):012x}"[:12] + "0" * 52
    folder = root / name / chash[:12] / f"v{version}"
    folder.mkdir(parents=True)
    run_id = run_id_for(name, chash, version)
    record = RunRecord(
        run_id=run_id, experiment=name, config_hash=chash, version=version, status="completed",
        command=["fsmrun"], device="cpu", amp=False, deterministic=True, created=created,
        updated=created, heartbeat=created, pid=None, hostname=socket.gethostname(),
        steps=4, epochs=1,
    )  # fmt: skip
    ev = CheckpointEval(step=4, epoch=1, val=split(acc), test=split(acc), test_ood=split(acc / 2))
    metrics = Metrics(
        run_id=run_id, experiment=name, monitor="val.string_acc", stop_reason="max_epochs",
        steps=4, epochs=1, wall_time_s=1.0,
        early_stop=EarlyStopState(monitor="val.string_acc", mode="max"), best=ev, last=ev,
    )  # fmt: skip
    RunFolder(folder).write_record(record)
    RunFolder(folder).write_config(config)
    atomic_write_json(folder / "metrics.json", metrics)
    if tags is not None:
        atomic_write_json(folder / "labels.json", {"tags": tags})
    return folder


def age(root: Path) -> None:
    """Every folder under `root` made an hour old (as if written long ago)."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            os.utime(path, (OLD, OLD))


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """Six runs: two languages x (transformer lr 1e-3, lstm lr 3e-3) x seeds, one tagged."""
    runs = [
        ("even", "transformer", 1e-3, 0, 0.9), ("even", "transformer", 1e-3, 1, 0.7),
        ("even", "lstm", 3e-3, 0, 0.6), ("odd", "transformer", 1e-3, 0, 0.8),
        ("odd", "lstm", 3e-3, 0, 0.5), ("odd", "lstm", 3e-3, 1, 0.4),
    ]  # fmt: skip
    for i, (name, arch, lr, seed, acc) in enumerate(runs):
        tags = {"paper": "yes"} if i == 3 else None
        write_run(tmp_path, name, arch, lr, seed, acc, created=1000.0 + i, tags=tags)
    age(tmp_path)
    RunIndex(tmp_path).reindex()
    return tmp_path


def ids(index: RunIndex, **query) -> list[str]:
    return [listed.row.run_id for listed in index.select(RunQuery(**query)).listed]


def count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    real = index_folders.read_indexed_run

    def counting(root, folder, rel=None):
        reads.append(rel)
        return real(root, folder, rel)

    monkeypatch.setattr(index_folders, "read_indexed_run", counting)
    return reads


def test_a_listing_of_an_unchanged_registry_reads_no_folder(registry, monkeypatch):
    reads = count_reads(monkeypatch)
    rows = RunIndex(registry).rows()
    assert len(rows) == 6 and reads == []
    with sqlite3.connect(registry / "registry.sqlite") as conn:  # every listing is known
        assert conn.execute("SELECT COUNT(*) FROM dirs").fetchone()[0] == 2 + 6


def test_an_edited_folder_is_read_again_and_only_it(registry, monkeypatch):
    index = RunIndex(registry)
    folder = registry / index.rows()[0].folder
    doc = json.loads((folder / "metrics.json").read_text())
    doc["best"]["test"]["string_acc"] = 0.123
    atomic_write_json(folder / "metrics.json", doc)  # a rename into the folder moves its mtime
    reads = count_reads(monkeypatch)
    first = index.rows()[0]
    assert reads == [first.folder] and first.test_string_acc == 0.123


def test_a_folder_copied_in_beside_an_indexed_version_is_found(registry, monkeypatch):
    index = RunIndex(registry)
    source = registry / index.rows()[0].folder
    copy = source.parent / "v2"
    shutil.copytree(source, copy)  # copytree keeps the old mtimes of the copied folder
    record = json.loads((copy / "run.json").read_text())
    record.update(version=2, run_id=record["run_id"][:-1] + "2")
    (copy / "run.json").write_text(json.dumps(record))
    os.utime(copy, (OLD, OLD))  # the folder's own mtime says nothing: its parent's does
    reads = count_reads(monkeypatch)
    rows = index.rows()
    assert len(rows) == 7 and reads == [f"{Path(source.parent.relative_to(registry))}/v2"]


def test_deleted_folders_and_experiments_are_dropped_without_reading(registry, monkeypatch):
    index = RunIndex(registry)
    shutil.rmtree(registry / index.rows()[0].folder)
    shutil.rmtree(registry / "odd")
    reads = count_reads(monkeypatch)
    assert [r.experiment for r in index.rows()] == ["even", "even"] and reads == []


def test_recent_listings_are_not_trusted(tmp_path):
    write_run(tmp_path, "even", "lstm", 1e-3, 0, 0.5, created=1.0)  # written just now
    RunIndex(tmp_path).reindex()
    with sqlite3.connect(tmp_path / "registry.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM dirs").fetchone()[0] == 0


def test_where_since_limit_and_sort(registry):
    index = RunIndex(registry)
    assert len(ids(index, where=tuple(parse_where(["model.arch=lstm"])))) == 3
    assert len(ids(index, where=tuple(parse_where(["train.lr=3e-3", "language=odd"])))) == 2
    assert ids(index, where=tuple(parse_where(["tag.paper=yes"]))) == [
        r.run_id for r in index.rows() if r.created == 1003.0
    ]
    assert ids(index, where=tuple(parse_where(["model.pos_encoding=None"]))) == ids(
        index, where=tuple(parse_where(["model.arch=lstm"]))
    )
    assert len(ids(index, since=1004.0)) == 2
    selection = index.select(RunQuery(sort="created", descending=True, limit=2))
    shown = [listed.row.created for listed in selection.listed]
    assert (shown, selection.total) == ([1005.0, 1004.0], 6)
    best = index.select(RunQuery(sort="test_string_acc", descending=True, limit=1))
    assert [listed.row.test_string_acc for listed in best.listed] == [0.9]


QUERIES = [
    {},
    {"where": ("model.arch=lstm",)},
    {"where": ("tag.paper=yes",)},
    {"where": ("train.lr=0.001", "seed=0")},
    {"experiment": "odd", "sort": "test_string_acc", "descending": True},
    {"since": 1002.0, "limit": 2},
    {"status": "completed", "sort": "run_id", "limit": 3},
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_index_and_the_folders_answer_alike(registry, query):
    query = {**query, "where": tuple(parse_where(list(query.get("where", ()))))}
    from_index = RunIndex(registry).select(RunQuery(**query))
    index_rows = [listed.row for listed in from_index.listed]
    (registry / "registry.sqlite").unlink()  # every folder is read and tested in Python
    from_folders = RunIndex(registry).select(RunQuery(**query))
    assert [listed.row for listed in from_folders.listed] == index_rows
    assert from_folders.total == from_index.total


def test_a_half_changed_registry_merges_in_order(registry):
    index = RunIndex(registry)
    write_run(registry, "even", "gru", 1e-3, 5, 0.95, created=1002.5)  # new, not indexed
    rows = index.rows(sort="created", descending=True)
    assert [r.created for r in rows] == [1005.0, 1004.0, 1003.0, 1002.5, 1002.0, 1001.0, 1000.0]
    selection = index.select(RunQuery(sort="test_string_acc", descending=True, limit=2))
    assert [listed.row.test_string_acc for listed in selection.listed] == [0.95, 0.9]
    assert selection.total == 7


def test_values_give_config_fields_and_metric_columns(registry):
    index = RunIndex(registry)
    query = RunQuery(status="completed", where=tuple(parse_where(["model.arch=lstm"])))
    got = sorted(
        v[4:] for v in index.values(query, ["language", "seed"], ["best__test__string_acc"])
    )
    assert got == [("even", 0, 0.6), ("odd", 0, 0.5), ("odd", 1, 0.4)]


def test_reindex_in_worker_processes_equals_reading_in_process(registry, monkeypatch):
    index = RunIndex(registry)
    serial = index.rows()
    monkeypatch.setattr(index_folders, "PARALLEL_MIN", 1)
    assert index.reindex(workers=2) == 6
    assert index.rows() == serial


def test_bad_filters_name_the_fix():
    with pytest.raises(ResultsFolderError, match="valid keys under model: .*d_model.*tag.NAME"):
        parse_where(["model.width=3"])
    with pytest.raises(ResultsFolderError, match="key=value"):
        parse_where(["model.arch"])
    with pytest.raises(ResultsFolderError, match="12h, 3d"):
        parse_since("yesterday")
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200


def test_an_exact_run_id_resolves_without_scanning(registry, monkeypatch):
    row = RunIndex(registry).rows()[0]

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned the registry")

    monkeypatch.setattr(layout_module, "iter_run_folders", no_scan)
    assert resolve_run(registry, row.run_id) == registry / row.folder
    prefix = row.run_id[: len(row.experiment) + 6]  # experiment and 5 hash characters
    assert resolve_run(registry, prefix) == registry / row.folder


def newest(index: RunIndex, limit: int = 2) -> list[str]:
    query = RunQuery(descending=True, limit=limit)
    assert query.newest_only
    return [listed.row.run_id for listed in index.select(query).listed]


def test_the_newest_page_stats_no_run_folder_of_an_unchanged_registry(registry, monkeypatch):
    index = RunIndex(registry)
    shown_rows = index.rows(sort="created", descending=True)
    expected = [r.run_id for r in shown_rows]
    stats: list[str] = []
    real = os.stat

    def counting(path, *args, **kwargs):
        stats.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(index_scan.os, "stat", counting)  # os.stat everywhere
    assert newest(index) == expected[:2]
    runs = [p for p in stats if Path(p).name.startswith("v")]
    hashes = [p for p in stats if len(Path(p).relative_to(registry).parts) == 2]
    # every hash folder is stat'ed, but of the run folders only the 2 rows shown (not 6)
    assert len(hashes) == 6
    assert sorted(runs) == sorted(str(registry / r.folder) for r in shown_rows[:2])


@pytest.mark.parametrize("shared", [False, True, "failing"])
def test_the_newest_page_finds_copied_deleted_and_edited_runs(registry, monkeypatch, shared):
    """`shared`: the check shared with a child process (as from 2,048 experiment folders
    on), one experiment folder per batch here; "failing": the child fails, so the whole
    check is done in this process."""
    if shared == "failing":
        monkeypatch.setattr(index_read, "SHARED_MIN", 0)

        def fail(*args):
            raise OSError("no child today")

        monkeypatch.setattr(index_read, "new_runs_by_uri", fail)
    elif shared:
        monkeypatch.setattr(index_read, "SHARED_MIN", 0)
        monkeypatch.setattr(index_scan, "EXPERIMENT_BATCH", 1)
        real = index_known.find_new_runs

        def in_child(*args):  # leaves a mark: the child's half runs in another process
            if os.getpid() != parent:
                (registry / ".child-checked").touch()
            return real(*args)

        parent = os.getpid()
        monkeypatch.setattr(index_known, "find_new_runs", in_child)
    index = RunIndex(registry)
    rows = index.rows(sort="created", descending=True)
    shown = registry / rows[0].folder
    doc = json.loads((shown / "metrics.json").read_text())
    doc["best"]["test"]["string_acc"] = 0.123
    atomic_write_json(shown / "metrics.json", doc)  # edited in place, by rename
    copy = registry / rows[3].folder.rsplit("/", 1)[0] / "v2"  # copied in beside a version
    shutil.copytree(registry / rows[3].folder, copy)
    record = json.loads((copy / "run.json").read_text())
    record.update(version=2, run_id=record["run_id"][:-1] + "2", created=5000.0)
    (copy / "run.json").write_text(json.dumps(record))
    os.utime(copy, (OLD, OLD))
    shutil.rmtree(registry / rows[1].folder)  # deleted
    page = index.select(RunQuery(descending=True, limit=3))
    listed = [item.row for item in page.listed]
    assert [r.run_id for r in listed] == [record["run_id"], rows[0].run_id, rows[2].run_id]
    assert listed[1].test_string_acc == 0.123 and page.total == 6
    shutil.rmtree(registry / "even")  # a whole experiment
    assert newest(index, 10) == [r.run_id for r in index.rows(sort="created", descending=True)]
    assert all(run_id.startswith("odd") for run_id in newest(index, 10))
    assert list(index.select(RunQuery(experiment="even", limit=5)).listed) == []
    assert (registry / ".child-checked").exists() == (shared is True)


def test_ls_json_lines_are_the_rows_as_validated(registry):
    index = RunIndex(registry)
    total, lines = index.select_json(RunQuery(sort="test_string_acc", descending=True))
    rows = index.rows(sort="test_string_acc", descending=True)
    assert total == 6 and list(lines) == [row.model_dump_json() for row in rows]


@pytest.mark.parametrize("batch", [1, 2, 512])
def test_experiments_compared_in_batches_find_every_change(registry, monkeypatch, batch):
    monkeypatch.setattr(index_scan, "EXPERIMENT_BATCH", batch)
    write_run(registry, "even-b", "lstm", 1e-3, 0, 0.5, created=2000.0)  # sorts between
    write_run(registry, "even0", "lstm", 1e-3, 0, 0.5, created=2001.0)  # even/ and even0/
    age(registry)
    index = RunIndex(registry)
    index.reindex()
    shutil.rmtree(registry / "odd")  # a gone experiment's rows fall in some batch's range
    edited = registry / index.rows(experiment="even-b")[0].folder
    atomic_write_json(edited / "labels.json", {"tags": {"seen": "yes"}})
    reads = count_reads(monkeypatch)
    rows = index.rows()
    on_disk = sorted(
        p.parent.relative_to(registry).as_posix() for p in registry.glob("*/*/v*/run.json")
    )
    assert sorted(r.folder for r in rows) == on_disk and len(rows) == 5
    assert reads == [edited.relative_to(registry).as_posix()]
    assert [r.tags for r in rows if r.experiment == "even-b"] == [{"seen": "yes"}]
    newest_first = [r.run_id for r in index.rows(sort="created", descending=True)]
    assert newest(index, 10) == newest_first and newest_first[0].startswith("even0")


@pytest.mark.parametrize("front_first", [0, 1, 2, 5])
def test_a_check_shared_by_two_processes_leaves_no_batch_out(registry, monkeypatch, front_first):
    """One side takes batches from the front, the other from the back (here in turn, the
    front having taken `front_first` before the back starts): together they find every
    change the whole check finds, whoever comes to which batch."""
    monkeypatch.setattr(index_scan, "EXPERIMENT_BATCH", 1)
    for name in ("a", "b", "c"):
        write_run(registry, name, "lstm", 1e-3, 0, 0.5, created=2000.0)
    age(registry)
    RunIndex(registry).reindex()
    shutil.rmtree(registry / "b")
    edited = next(registry.glob("even/*/v1"))
    atomic_write_json(edited / "labels.json", {"tags": {"seen": "yes"}})
    conn = sqlite3.connect(f"file:{registry / 'registry.sqlite'}?mode=ro", uri=True)
    load = index_known.known_loader(conn, full=True)
    whole = index_scan.find_changes(registry, None, load)
    assert whole.stale == [edited.relative_to(registry).as_posix()] and len(whole.excluded) == 2

    share = index_scan.Share(registry, None)
    count = len(share.experiments)  # one batch each
    sides = {"front": share.take(count), "back": share.back().take(count)}
    taken: dict[str, list[int]] = {"front": [], "back": []}
    order = ["front"] * front_first + ["back", "front"] * count
    for side in order:
        if (number := next(sides[side], None)) is not None:
            taken[side].append(number)
    assert sorted({*taken["front"], *taken["back"]}) == list(range(count))
    assert len(taken["front"]) + len(taken["back"]) <= count + 1  # at most one twice
    assert taken["back"] == sorted(taken["back"], reverse=True)

    split = index_scan.Share(registry, None)
    mine = index_scan.find_changes(registry, None, load, split.back())
    theirs = index_scan.find_changes(registry, None, load, split)
    conn.close()
    assert index_scan.merge(mine, theirs) == whole and not theirs.stale  # the back took all


def test_a_forked_child_leaves_ctrl_c_to_its_parent(capfd):
    """Ctrl-C reaches the whole process group: the child ignores it (no traceback; the
    parent ends it as it exits) and answers; a failing task is answered as a failure."""

    def interrupted() -> str:
        os.kill(os.getpid(), signal.SIGINT)
        return "done"

    def failing() -> None:
        raise OSError("no disk today")

    child = index_known.Forked([(interrupted, ()), (failing, ())], "test-child")
    assert child.take() == "done" and child.take() is None
    child.close()
    assert child.process.exitcode == 0 and "Traceback" not in capfd.readouterr().err


def test_a_forked_child_goes_on_while_its_answer_waits_to_be_read(tmp_path):
    """An answer larger than a pipe holds does not keep the child from its next task (a
    report's fields, then its part of the check): it is written while the next one runs."""
    started = tmp_path / "second task started"

    def large() -> bytes:
        return b"x" * (4 << 20)  # 4 MB: a pipe holds 64 kB

    def second() -> str:
        started.write_text("yes")
        return "second"

    child = index_known.Forked([(large, ()), (second, ())], "test-child")
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists()  # before the parent read the first answer
    assert child.take() == b"x" * (4 << 20) and child.take() == "second"
    child.close()
    assert child.process.exitcode == 0


def test_a_forked_child_ends_when_its_parent_stops_reading(capfd):
    """With the parent's end of the pipe closed (the parent gone), the child's writes fail
    and it ends quietly, rather than wait forever on a full pipe (it holds no reading end
    of its own)."""

    def large() -> bytes:
        return b"x" * (1 << 20)  # more than a pipe holds

    child = index_known.Forked([(large, ()), (large, ())], "test-child")
    child.answers.close()  # the parent is not listening any more
    child.process.join(30)
    assert child.process.exitcode == 0 and "Traceback" not in capfd.readouterr().err


def test_a_forked_childs_answer_that_cannot_be_sent_is_a_failure():
    """An answer pickle refuses (a lock) comes back as a failed task: the caller does it."""
    import threading

    child = index_known.Forked([(threading.Lock, ()), (str, ("next",))], "test-child")
    assert child.take() is None and child.take() == "next"
    child.close()
    assert child.process.exitcode == 0
