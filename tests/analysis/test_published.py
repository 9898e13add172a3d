"""Published numbers beside measured ones: matching a suite's entries to runs, mean and max
over seeds at each run's evaluated checkpoint, and the built-in suites' entries."""

from __future__ import annotations

import pytest

from fsmrun.analysis.published import compare_published, published_markdown
from fsmrun.analysis.report import ReportRun
from fsmrun.experiments import load_experiment
from fsmrun.schemas.records import CheckpointEval, EarlyStopState, Metrics, SplitMetrics
from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps.spec import expand, load_spec


def split(acc: float) -> SplitMetrics:
    fields = dict.fromkeys(
        ("nll", "token_acc", "next_valid", "class_acc", "class_baseline", "string_baseline"),
        None,
    )
    return SplitMetrics(
        n_strings=10, loss=0.0, state_acc=None, string_acc=acc, length_mean_acc=acc, **fields
    )


def run(arch: str, seed: int, best: float, last: float, evaluated: str) -> ReportRun:
    config = load_experiment("parity").model_copy(deep=True)
    config = config.model_copy(
        update={"seed": seed, "model": config.model.model_copy(update={"arch": arch})}
    )

    def at(acc: float) -> CheckpointEval:
        return CheckpointEval(step=1, epoch=1, val=split(acc), test=split(acc), test_ood=split(acc))

    metrics = Metrics(
        run_id=f"r{seed}",
        experiment="parity",
        monitor="val.string_acc",
        stop_reason="max_epochs",
        steps=1,
        epochs=1,
        wall_time_s=0.0,
        early_stop=EarlyStopState(monitor="val.string_acc", mode="max"),
        best=at(best),
        last=at(last),
        evaluated=evaluated,
    )
    return ReportRun(f"r{seed}", config, metrics)


SPEC = SweepSpec.model_validate(
    {
        "name": "s",
        "experiments": ["parity"],
        "published": [
            {"experiment": "parity", "where": {"model.arch": "lstm"}, "value": 1.0, "source": "T2"},
            {"experiment": "parity", "where": {"model.arch": "gru"}, "value": 0.5, "source": "T2"},
        ],
    }
)


def test_each_run_is_read_at_its_evaluated_checkpoint_then_mean_and_max() -> None:
    runs = [
        run("lstm", 0, best=0.9, last=0.5, evaluated="last"),  # 0.5 counts
        run("lstm", 1, best=0.8, last=0.1, evaluated="best"),  # 0.8 counts
        run("transformer", 0, best=1.0, last=1.0, evaluated="best"),  # another selection
    ]
    lstm, gru = compare_published(SPEC, runs)
    assert (lstm.n_runs, lstm.mean, lstm.max) == (2, pytest.approx(0.65), 0.8)
    assert lstm.selection == "parity model.arch=lstm"
    assert (gru.n_runs, gru.mean, gru.max) == (0, None, None)
    table = published_markdown([lstm, gru])
    metric = "test_ood.length_mean_acc"
    assert f"| parity model.arch=lstm | {metric} | 1.000 (max) | 0.650 | 0.800 | 2 | T2 |" in table
    assert (
        "| parity model.arch=gru | test_ood.length_mean_acc | 0.500 (max) | - | - | 0 | T2 |"
        in table
    )


@pytest.mark.parametrize("suite", ["deletang", "tomita"])
def test_every_published_entry_of_a_builtin_suite_selects_some_of_its_cells(suite: str) -> None:
    spec = load_spec(suite)
    cells = expand(spec)
    assert spec.published
    for entry in spec.published:
        hits = [
            c
            for c in cells
            if c.config.name == entry.experiment
            and all(str(c.overrides.get(k)) == str(v) for k, v in entry.where.items())
        ]
        assert len(hits) == len(spec.seeds), entry
        assert entry.source and 0.0 <= entry.value <= 1.0
