"""A report made from the run index equals the report made from every run folder (repeats
counted once, groups split by the fields that differ, tags), and reads no folder when its
groups need no splitting."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fsmrun.analysis import report_source
from fsmrun.analysis.report import build_report
from fsmrun.analysis.report_source import collect_indexed_runs, collect_runs, indexed_report
from fsmrun.base.hashing import config_hash
from fsmrun.base.io import atomic_write_json
from fsmrun.cli import app
from fsmrun.runs import index_report
from fsmrun.runs.index import RunIndex
from fsmrun.runs.index_query import parse_where
from fsmrun.runs.layout import run_id_for
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from fsmrun.schemas.records import CheckpointEval, EarlyStopState, Metrics, RunRecord, SplitMetrics
from fsmrun.schemas.sweep import Report

OLD = time.time() - 3600


def write_run(root: Path, name: str, arch: str, lr: float, seed: int, acc: float,
              updated: float, version: int = 1, tags: dict | None = None,
              pos_encoding: str = "rope") -> None:  # fmt: skip
    config = ExperimentConfig(
        name=name, seed=seed, data=DataConfig(regex="(a|b)*ab", alphabet="ab"),
        model=ModelConfig(arch=arch, pos_encoding=pos_encoding), train=TrainConfig(lr=lr),
    )  # fmt: skip
    chash = config_hash(config)
    folder = root / name / chash[:12] / f"v{version}"
    folder.mkdir(parents=True)
    run_id = run_id_for(name, chash, version)
    record = RunRecord(
        run_id=run_id, experiment=name, config_hash=chash, version=version, status="completed",
        command=["fsmrun"], device="cpu", amp=False, deterministic=True, created=updated,
        updated=updated, heartbeat=updated, pid=None, hostname=socket.gethostname(),
    )  # fmt: skip
    part = SplitMetrics(
        n_strings=10, loss=0.5, nll=0.4, token_acc=0.9, next_valid=0.95, class_acc=acc,
        class_baseline=0.5, string_acc=acc, string_baseline=0.25, state_acc=0.8,
    )  # fmt: skip
    ev = CheckpointEval(step=4, epoch=1, val=part, test=part, test_ood=None)
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


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """Two experiments; lstm at two learning rates (a --by model.arch group to split); the
    transformer seed 0 of `even` trained twice (v2 newer: it counts)."""
    runs = [
        ("even", "transformer", 1e-3, 0, 0.9, 1), ("even", "transformer", 1e-3, 1, 0.7, 1),
        ("even", "lstm", 3e-3, 0, 0.6, 1), ("even", "lstm", 1e-3, 0, 0.3, 1),
        ("odd", "transformer", 1e-3, 0, 0.8, 1), ("odd", "lstm", 3e-3, 1, 0.4, 1),
        ("even", "transformer", 1e-3, 0, 0.5, 2),
    ]  # fmt: skip
    for i, (name, arch, lr, seed, acc, version) in enumerate(runs):
        tags = {"paper": "yes"} if i in (1, 4) else None
        write_run(tmp_path, name, arch, lr, seed, acc, 1000.0 + i, version, tags)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if path.is_dir():
            os.utime(path, (OLD, OLD))
    RunIndex(tmp_path).reindex()
    return tmp_path


@pytest.mark.parametrize(
    ("by", "where", "pool"),
    [
        (["model.arch"], [], False),
        (["model.arch"], [], True),
        (["experiment", "model.arch", "model.pos_encoding"], [], False),
        (["train.lr"], [], False),
        (["tag.paper"], [], False),
        (["model.arch"], ["tag.paper=yes"], False),
        (["seed"], ["model.arch=lstm"], False),
        (["model.bias", "train.betas"], [], False),  # a boolean and a list
    ],
)
def test_the_index_and_the_folders_report_alike(registry, by, where, pool):
    metrics = ["test.string_acc", "val.class_acc"]
    conditions = parse_where(where)
    folders = [
        r for r in collect_runs(registry)
        if all(c.matches(r.value(c.key)) for c in conditions)
    ]  # fmt: skip
    expected = build_report(folders, by, metrics, pool=pool)
    runs, repeats = collect_indexed_runs(registry, [], by, metrics, "best", conditions)
    assert build_report(runs, by, metrics, pool=pool, repeats=repeats) == expected


def test_an_unsplit_report_reads_no_run_folder(registry, monkeypatch):
    reads: list[Path] = []
    monkeypatch.setattr(report_source, "load_report_run", lambda path: reads.append(path))
    runs, repeats = collect_indexed_runs(registry, ["odd"], ["model.arch"], ["test.string_acc"],
                                         "best")  # fmt: skip
    report = build_report(runs, ["model.arch"], ["test.string_acc"], repeats=repeats)
    assert reads == [] and [row.n_runs for row in report.rows] == [1, 1]
    # The lstm group of all runs is split by train.lr: the fields come from the index too.
    runs, repeats = collect_indexed_runs(registry, [], ["model.arch"], ["test.string_acc"], "best")
    report = build_report(runs, ["model.arch"], ["test.string_acc"], repeats=repeats)
    # v1 of even's transformer seed 0, and odd's same config (names are not hashed)
    assert repeats == 2 and report.notes[0].startswith("2 repeated run(s)")
    assert report.split_by == ["train.lr", "experiment"] and reads == []


def _indexed(root: Path) -> Report:
    doc, _ = indexed_report(root, [], ["model.arch"], ["test.string_acc"], "best")
    return Report.model_validate(doc)


def _from_folders(root: Path) -> Report:
    return build_report(collect_runs(root), ["model.arch"], ["test.string_acc"])


def test_the_check_in_a_child_process_sees_edits_copies_and_deletions(registry, monkeypatch):
    """At 2,000 runs and more the folders are compared in a child process while the rows
    are aggregated (forced here for 7); a change it finds makes the report again."""
    monkeypatch.setattr(index_report, "PARALLEL_MIN", 0)
    started = []
    real = index_report.ReportReader._child

    def child(self, *args):
        found = real(self, *args)
        started.append(found is not None)
        return found

    monkeypatch.setattr(index_report.ReportReader, "_child", child)
    assert _indexed(registry) == _from_folders(registry) and started == [True]
    before = _indexed(registry).rows[0].metrics["test.string_acc"].mean
    folder = next(registry.glob("even/*/v2"))  # the newest of its config: reported
    metrics = Metrics.model_validate_json((folder / "metrics.json").read_text())
    edited = metrics.best.model_copy(update={"test": metrics.best.test.model_copy(
        update={"string_acc": 0.123})})  # fmt: skip
    atomic_write_json(folder / "metrics.json", metrics.model_copy(update={"best": edited}))
    write_run(registry, "odd", "lstm", 1e-2, 7, 0.9, 2000.0)  # copied in
    shutil.rmtree(next(registry.glob("odd/*/v1")))  # deleted
    after = _indexed(registry)
    assert after == _from_folders(registry) and started == [True, True, True]
    lows = [row.metrics["test.string_acc"].min for row in after.rows]
    assert 0.123 in lows and before != 0.123


def test_report_json_encoded_before_the_check_ends_is_not_printed_stale(registry, monkeypatch):
    """`report --json` encodes the report while the child finishes its check; when the
    check finds a change, the report built again is the one printed."""
    monkeypatch.setattr(index_report, "PARALLEL_MIN", 0)
    folder = next(registry.glob("even/*/v2"))
    metrics = Metrics.model_validate_json((folder / "metrics.json").read_text())
    edited = metrics.best.model_copy(update={"test": metrics.best.test.model_copy(
        update={"string_acc": 0.123})})  # fmt: skip
    atomic_write_json(folder / "metrics.json", metrics.model_copy(update={"best": edited}))
    docs: list[dict] = []  # each report built, as the CLI's callback gets it
    real = report_source.indexed_report

    def counting(*args, built, **kwargs):
        return real(*args, built=lambda doc: (docs.append(doc), built(doc)), **kwargs)

    monkeypatch.setattr(report_source, "indexed_report", counting)
    args = ["report", "--by", "model.arch", "--metric", "test.string_acc", "--json"]
    result = CliRunner().invoke(app, [*args, "--results-dir", str(registry)])
    assert result.exit_code == 0, result.output
    assert len(docs) == 2  # the stale report, then the one built around the change
    printed = Report.model_validate_json(result.stdout)
    assert printed == _from_folders(registry)
    assert 0.123 in [row.metrics["test.string_acc"].min for row in printed.rows]


def test_a_failed_child_process_is_done_in_this_one(registry, monkeypatch):
    monkeypatch.setattr(index_report, "PARALLEL_MIN", 0)

    def fail(*args):
        raise OSError("no child today")

    monkeypatch.setattr(index_report, "changes_by_uri", fail)
    assert _indexed(registry) == _from_folders(registry)
    shutil.rmtree(next(registry.glob("even/*/v2")))
    assert _indexed(registry) == _from_folders(registry)


def test_fields_the_child_could_not_read_are_read_here(registry, monkeypatch):
    """The child reads every configuration's --by fields while the rows are read here; if it
    fails they are read in this process."""
    monkeypatch.setattr(index_report, "PARALLEL_MIN", 0)
    by = ["model.arch", "train.lr"]
    expected = build_report(collect_runs(registry), by, ["test.string_acc"])
    doc, _ = indexed_report(registry, [], by, ["test.string_acc"], "best")
    assert Report.model_validate(doc) == expected

    def fail(*args):
        raise OSError("no child today")

    monkeypatch.setattr(index_report, "_shared_fields", fail)
    doc, _ = indexed_report(registry, [], by, ["test.string_acc"], "best")
    assert Report.model_validate(doc) == expected


def test_one_run_per_configuration_walks_the_seedless_index(registry):
    """What the child asks (one run of each configuration) reads an index in key order
    rather than sorting every row."""
    where = f"status = 'completed' AND {index_report._REPORTED}"
    one = f"SELECT min(rowid) FROM runs WHERE {where} GROUP BY seedless_key"
    conn = sqlite3.connect(registry / "registry.sqlite")
    try:
        plan = " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {one}"))
    finally:
        conn.close()
    assert "COVERING INDEX runs_seedless" in plan and "TEMP B-TREE" not in plan


def test_what_the_index_does_not_keep_is_read_from_the_folders(tmp_path):
    """Two LSTM configs that differ only in pos_encoding, which the index keeps as None for
    a recurrent model: the folders name the field that differs, as the folder path does."""
    write_run(tmp_path, "even", "lstm", 1e-3, 0, 0.6, 1000.0, pos_encoding="rope")
    write_run(tmp_path, "even", "lstm", 1e-3, 0, 0.4, 1001.0, pos_encoding="learned")
    RunIndex(tmp_path).reindex()
    report = _indexed(tmp_path)
    assert report == _from_folders(tmp_path) and report.split_by == ["model.pos_encoding"]
