"""Published numbers beside measured ones: matching a suite's entries to runs, mean and max
over seeds at each run's evaluated checkpoint, how far each value was checked (its mark and
footnote), and the built-in suites' entries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fsmrun.analysis.published import compare_published, published_markdown, spec_of
from fsmrun.analysis.report import ReportRun
from fsmrun.experiments import load_experiment
from fsmrun.schemas.records import CheckpointEval, EarlyStopState, Metrics, SplitMetrics
from fsmrun.schemas.sweep import PublishedResult, SweepRecord, SweepSpec
from fsmrun.sweeps.coordinator import write_record
from fsmrun.sweeps.spec import SweepError, expand, load_spec, parse_spec


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
            {
                "experiment": "parity",
                "where": {"model.arch": "gru"},
                "value": 0.5,
                "source": "T2",
                "checked": "secondary",
                "checked_note": "reprinted in X, Table 5",
            },
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
    # unchecked (the default) and secondary values carry their mark and say so
    lstm_line = f"| parity model.arch=lstm | {metric} | 1.000 (max) ? | unchecked | 0.650 | 0.800 |"
    assert f"{lstm_line} 2 | T2 |" in table
    gru_line = f"| parity model.arch=gru | {metric} | 0.500 (max) ~ | secondary | - | - | 0 | T2 |"
    assert gru_line in table
    notes = [line for line in table.splitlines() if line.startswith(("~ ", "? "))]
    assert [n.split(":")[0] for n in notes] == ["~ secondary", "? unchecked"]


def test_a_primary_value_has_no_mark_and_no_footnote() -> None:
    entry = SPEC.published[0].model_copy(update={"checked": "primary"})
    spec = SPEC.model_copy(update={"published": [entry]})
    table = published_markdown(compare_published(spec, []))
    assert "| 1.000 (max) | primary |" in table
    assert table.endswith("| T2 |\n")  # the table and nothing after it


def test_the_schema_refuses_an_unknown_status_and_a_secondary_check_without_its_reprint():
    base = {"experiment": "parity", "value": 1.0, "source": "T2"}
    assert PublishedResult.model_validate(base).checked == "unchecked"
    with pytest.raises(ValidationError, match="'primary', 'secondary' or 'unchecked'"):
        PublishedResult.model_validate({**base, "checked": "verified"})
    with pytest.raises(ValidationError, match="needs a checked_note naming the reprint"):
        PublishedResult.model_validate({**base, "checked": "secondary", "checked_note": " "})
    toml = 'experiments = ["parity"]\n[[published]]\nexperiment = "parity"\nvalue = 1.0\n'
    with pytest.raises(SweepError, match=r"s.toml: invalid sweep spec: published.0.checked: "):
        parse_spec(toml + 'source = "T2"\nchecked = "yes"\n', "s.toml", "s")


def _write_sweep(root, spec: SweepSpec) -> None:
    sweep_id = f"{spec.name}-000000000000"
    record = SweepRecord(sweep_id=sweep_id, sweep_hash="0", spec=spec, created=0.0, updated=0.0,
                         counts={}, cells=[])  # fmt: skip
    write_record(root, record)


def test_a_sweep_run_from_a_suite_reports_the_suite_files_current_published_values(tmp_path):
    suite = load_spec("tomita")
    stale = [suite.published[0].model_copy(update={"value": 0.5, "checked": "unchecked"})]
    _write_sweep(tmp_path, suite.model_copy(update={"published": stale}))
    assert spec_of(tmp_path, "tomita").published == suite.published  # corrected since it ran
    mine = SPEC.model_copy(update={"name": "mine"})  # not a suite: its own entries
    _write_sweep(tmp_path, mine)
    assert spec_of(tmp_path, "mine").published == SPEC.published


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
        assert entry.checked != "secondary" or entry.checked_note
