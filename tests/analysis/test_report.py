"""Reports: grouping and aggregation over seeds, checked on fabricated metrics."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fsmrun.analysis.report import (
    ReportError,
    ReportRun,
    build_report,
    to_csv,
    to_markdown,
)
from fsmrun.schemas.config import DataConfig, ExperimentConfig, ModelConfig
from fsmrun.schemas.records import BinMetrics, CheckpointEval, EarlyStopState, Metrics, SplitMetrics


def split(acc: float, base: float = 0.5, bins=()) -> SplitMetrics:
    return SplitMetrics(
        n_strings=10, loss=1.0, nll=None, token_acc=None, next_valid=None, class_acc=acc,
        class_baseline=0.7, string_acc=acc, string_baseline=base, state_acc=None,
        bins=[
            BinMetrics(lo=lo, hi=hi, n_strings=5, string_acc=a, string_baseline=0.5,
                       class_acc=None, class_baseline=None, token_acc=None, next_valid=None,
                       state_acc=None)
            for lo, hi, a in bins
        ],
    )  # fmt: skip


def run(arch: str, seed: int, test: float, ood: float, base: float = 0.5) -> ReportRun:
    config = ExperimentConfig(
        name="lang", seed=seed, data=DataConfig(regex="a*", alphabet="ab"),
        model=ModelConfig(arch=arch),
    )  # fmt: skip
    ev = CheckpointEval(
        step=1, epoch=1, val=split(test), test=split(test, base),
        test_ood=split(ood, base, bins=[(21, 30, ood), (31, 40, ood / 2)]),
    )  # fmt: skip
    metrics = Metrics(
        run_id=f"lang-{arch}-{seed}", experiment="lang", monitor="val.string_acc",
        stop_reason="max_epochs", steps=1, epochs=1, wall_time_s=1.0,
        early_stop=EarlyStopState(monitor="val.string_acc", mode="max"), best=ev, last=ev,
    )  # fmt: skip
    return ReportRun(metrics.run_id, config, metrics)


RUNS = [
    run("transformer", 0, 1.0, 0.5, base=0.4),
    run("transformer", 1, 0.8, 0.7, base=0.6),
    run("transformer", 2, 0.9, 0.6, base=0.5),
    run("lstm", 0, 0.6, 0.6),
]


def test_groups_are_aggregated_over_seeds_with_hand_computed_values():
    report = build_report(RUNS)
    assert [r.group for r in report.rows] == [
        {"experiment": "lang", "model.arch": "lstm", "model.pos_encoding": None},
        {"experiment": "lang", "model.arch": "transformer", "model.pos_encoding": "rope"},
    ]
    lstm, tf = report.rows
    assert lstm.n_runs == 1 and lstm.metrics["test.string_acc"].std is None
    stats = tf.metrics["test.string_acc"]
    assert tf.seeds == [0, 1, 2] and stats.n == 3
    assert stats.mean == pytest.approx(0.9)
    assert stats.std == pytest.approx(0.1)  # sample std of 1.0, 0.8, 0.9
    assert (stats.min, stats.max) == (0.8, 1.0)
    assert stats.baseline == pytest.approx(0.5)  # mean of 0.4, 0.6, 0.5
    assert tf.metrics["test_ood.string_acc"].mean == pytest.approx(0.6)


def test_bins_are_aggregated_per_length_bin():
    report = build_report(RUNS, by=["model.arch"], metrics=["test_ood.string_acc"], bins=True)
    tf = report.rows[1]
    assert [(b.lo, b.hi) for b in tf.bins] == [(21, 30), (31, 40)]
    assert tf.bins[0].stats.mean == pytest.approx(0.6)
    assert tf.bins[1].stats.mean == pytest.approx(0.3)
    assert tf.bins[1].stats.baseline == pytest.approx(0.5)


def test_csv_markdown_and_json_forms():
    report = build_report(RUNS, by=["model.arch"], metrics=["test.string_acc"])
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert rows[1]["model.arch"] == "transformer" and rows[1]["n"] == "3"
    assert float(rows[1]["test.string_acc.mean"]) == pytest.approx(0.9)
    assert rows[0]["test.string_acc.std"] == ""
    md = to_markdown(report).splitlines()
    assert md[0] == "| model.arch | n | test.string_acc | test.string_acc baseline |"
    assert md[3] == "| transformer | 3 | 0.9000 ± 0.1000 | 0.5000 |"
    doc = json.loads(report.model_dump_json())
    assert doc["rows"][1]["metrics"]["test.string_acc"]["max"] == 1.0


def test_unknown_metrics_and_fields_are_named():
    with pytest.raises(ReportError, match="test_ood"):
        build_report(RUNS, metrics=["ood.string_acc"])
    with pytest.raises(ReportError, match="model.ach"):
        build_report(RUNS, by=["model.ach"])


def test_report_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, fsmrun.analysis.report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
