"""Reports: grouping and aggregation over seeds, checked on fabricated metrics."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fsmrun.analysis.report import ReportError, ReportRun, build_report, filter_runs
from fsmrun.analysis.report_forms import to_csv, to_markdown
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
    assert rows[1]["metric"] == "test.string_acc" and rows[1]["mean"] == "0.900"
    assert rows[0]["std"] == ""
    md = to_markdown(report).splitlines()
    assert md[0] == "| model.arch | metric | n | mean | std | min | max | baseline |"
    assert md[3] == "| transformer | test.string_acc | 3 | 0.900 | 0.100 | 0.800 | 1.000 | 0.500 |"
    doc = json.loads(report.model_dump_json())
    assert doc["rows"][1]["metrics"]["test.string_acc"]["max"] == 1.0


def test_unknown_metrics_and_fields_are_named():
    with pytest.raises(ReportError, match="test_ood"):
        build_report(RUNS, metrics=["ood.string_acc"])
    with pytest.raises(ReportError, match="model.ach"):
        build_report(RUNS, by=["model.ach"])
    assert len(filter_runs(RUNS, {"model.arch": "lstm"})) == 1


def test_report_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, fsmrun.analysis.report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------------------- honest groups


def varied(seed: int, acc: float, n_train: int = 400, regex: str = "a*", updated: float = 0.0,
           run_id: str | None = None, epochs: int = 10) -> ReportRun:  # fmt: skip
    base = run("lstm", seed, acc, acc)
    config = base.config.model_copy(
        update={
            "data": base.config.data.model_copy(update={"n_train": n_train, "regex": regex}),
            "train": base.config.train.model_copy(update={"epochs": epochs}),
        }
    )
    return ReportRun(run_id or f"{base.run_id}-{n_train}-{regex}-{epochs}", config, base.metrics,
                     updated)  # fmt: skip


def test_a_group_of_different_configs_is_split_by_the_fields_that_differ():
    runs = [varied(0, 1.0, n_train=400), varied(0, 0.6, n_train=1200), varied(1, 0.8, 400)]
    report = build_report(runs, by=["model.arch"], metrics=["test.string_acc"])
    assert report.split_by == ["data.n_train"]
    assert [(r.group["data.n_train"], r.n_runs, r.seeds) for r in report.rows] == [
        (1200, 1, [0]),
        (400, 2, [0, 1]),
    ]
    assert report.rows[1].metrics["test.string_acc"].mean == 0.9
    assert "split by data.n_train" in report.notes[0]
    pooled = build_report(runs, by=["model.arch"], metrics=["test.string_acc"], pool=True)
    assert pooled.split_by == [] and pooled.rows[0].n_runs == 3


def test_a_config_and_seed_run_twice_counts_once_and_a_child_run_is_its_own_config():
    older = varied(0, 0.2, updated=1.0, run_id="lang-a-v1")
    newer = varied(0, 0.6, updated=2.0, run_id="lang-a-v2")
    child = varied(0, 0.9, updated=3.0, run_id="lang-b-v1", epochs=20)  # extended to 20 epochs
    report = build_report([older, newer, child], by=["model.arch"], metrics=["test.string_acc"])
    assert report.split_by == ["train.epochs"]
    assert [(r.group["train.epochs"], r.run_ids) for r in report.rows] == [
        (10, ["lang-a-v2"]),
        (20, ["lang-b-v1"]),
    ]
    assert report.rows[0].metrics["test.string_acc"].mean == 0.6  # the newest, once
    assert any("counted once" in note for note in report.notes)


def test_agg_median_and_max_and_digits_round_every_form_alike():
    runs = [varied(s, a) for s, a in enumerate([0.1, 0.2, 0.64, 0.9])]
    for agg, value in (("mean", 0.46), ("median", 0.42), ("max", 0.9)):
        report = build_report(runs, by=["model.arch"], metrics=["test.string_acc"], agg=agg,
                              digits=2)  # fmt: skip
        stats = report.rows[0].metrics["test.string_acc"]
        assert getattr(stats, agg) == round(value, 2)
        csv_row = next(csv.DictReader(io.StringIO(to_csv(report))))
        rest = [s for s in ("std", "min", "max", "baseline") if s != agg]
        assert list(csv_row) == ["model.arch", "metric", "n", agg, *rest]
        assert csv_row[agg] == f"{round(value, 2):.2f}"
        md_cells = to_markdown(report).splitlines()[2].strip("| ").split(" | ")
        assert md_cells == list(csv_row.values())  # the same text, column for column
        doc = json.loads(report.model_dump_json())
        assert doc["rows"][0]["metrics"]["test.string_acc"][agg] == float(csv_row[agg])
    assert build_report(runs, by=["model.arch"], metrics=["test.string_acc"],
                        digits=1).rows[0].metrics["test.string_acc"].std == 0.4  # fmt: skip
    with pytest.raises(ReportError, match="--agg"):
        build_report(runs, agg="mode")


def test_bins_never_pool_two_languages():
    runs = [varied(0, 0.5, regex="a*"), varied(0, 0.7, regex="b*")]
    report = build_report(runs, by=["model.arch"], metrics=["test_ood.string_acc"], bins=True,
                          pool=True)  # fmt: skip
    assert report.split_by == ["data.regex"] and len(report.rows) == 2  # even with --pool
    split = build_report(runs, by=["model.arch"], metrics=["test_ood.string_acc"], bins=True)
    assert split.split_by == ["data.regex"] and len(split.rows) == 2
    assert all(len({(b.lo, b.hi) for b in row.bins}) == 2 for row in split.rows)


def test_differing_fields_are_named_in_the_first_members_order():
    """The fields besides --by whose values differ among a group's configurations: with
    equal key sets, a field counts when any member differs from the first; with unequal
    ones, only among the members that have it."""
    from fsmrun.analysis.report import _differing

    first = {"train.lr": 0.1, "model.arch": "lstm", "data.regex": "a*", "train.betas": [0.9, 0.99]}
    second = {**first, "data.regex": "b*"}
    third = {**first, "train.lr": 0.2, "train.betas": [0.9, 0.999]}
    assert _differing([first, second, third], ["data.regex"]) == ["train.lr", "train.betas"]
    assert _differing([first, second, third], []) == ["train.lr", "data.regex", "train.betas"]
    assert _differing([first, {**first}], []) == []
    recurrent = {k: v for k, v in first.items() if k != "model.arch"}
    assert _differing([first, {**recurrent, "train.lr": 0.3}], []) == ["train.lr"]


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_the_stored_seedless_fields_are_a_configs_own(arch):
    """What the index keeps of a config gives the same seedless fields, in the same order,
    as the config itself (a recurrent model's pos_encoding left out)."""
    from fsmrun.runs.index_columns import config_fields, seedless_fields, stored_seedless_fields

    config = ExperimentConfig(
        name="exp", description="words", seed=3, data=DataConfig(regex="(ab)*", alphabet="ab"),
        model=ModelConfig(arch=arch),
    )  # fmt: skip
    stored = stored_seedless_fields(config_fields(config))
    assert list(stored.items()) == list(seedless_fields(config).items())
    assert "seed" not in stored and "description" not in stored
    assert ("model.pos_encoding" in stored) == (arch == "transformer")
