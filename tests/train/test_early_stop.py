"""`decide_stop` and the early-stopping state: which reason wins, hand-checked cases."""

from __future__ import annotations

import pytest

from fsmrun.schemas.config import TrainConfig
from fsmrun.schemas.records import EarlyStopState, SplitMetrics
from fsmrun.train.early_stop import decide_stop, flat_metrics, update_early_stop


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 5, "patience": 2, "monitor": "val.string_acc", **kw})


def state(bad_epochs: int = 0, best: float | None = 0.5) -> EarlyStopState:
    return EarlyStopState(
        monitor="val.string_acc", mode="max", best_value=best, bad_epochs=bad_epochs
    )


def test_nothing_stops_a_run_in_its_stride():
    assert decide_stop(cfg(), step=10, epochs_done=1) is None
    assert decide_stop(cfg(), step=10, epochs_done=1, early_stop=state(1), value=0.4) is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"interrupted": True}, "interrupted"),
        ({"max_steps": 10}, "max_steps"),
        ({"max_steps": 11}, None),
        ({"epochs_done": 5}, "max_epochs"),
        ({"early_stop": state(2), "value": 0.4}, "patience"),
        ({"early_stop": state(0), "value": 0.99}, None),
    ],
)
def test_each_reason_on_its_own(kwargs, expected):
    args = {"step": 10, "epochs_done": 1, **kwargs}
    assert decide_stop(cfg(), **args) == expected


def test_reasons_rank_threshold_patience_epochs_steps_interrupt():
    c = cfg(stop_threshold=0.95)
    everything = dict(step=50, epochs_done=5, interrupted=True, max_steps=50)
    assert decide_stop(c, **everything, early_stop=state(2), value=0.96) == "threshold"
    assert decide_stop(c, **everything, early_stop=state(2), value=0.5) == "patience"
    assert decide_stop(c, **everything) == "max_epochs"
    assert decide_stop(c, **{**everything, "epochs_done": 1}) == "max_steps"
    assert decide_stop(c, **{**everything, "epochs_done": 1, "max_steps": None}) == "interrupted"


def test_patience_and_threshold_need_a_validation():
    c = cfg(stop_threshold=0.1)
    assert decide_stop(c, step=3, epochs_done=0, early_stop=state(9)) is None


def test_threshold_in_min_mode_stops_at_or_below_it():
    c = cfg(monitor="val.nll", monitor_mode="min", stop_threshold=0.2)
    low = EarlyStopState(monitor="val.nll", mode="min", best_value=0.3)
    assert decide_stop(c, step=1, epochs_done=1, early_stop=low, value=0.2) == "threshold"
    assert decide_stop(c, step=1, epochs_done=1, early_stop=low, value=0.21) is None


def test_update_counts_bad_epochs_under_min_delta():
    c = cfg(min_delta=0.1)
    s = EarlyStopState(monitor="val.string_acc", mode="max")
    seen = []
    for epoch, value in enumerate([0.5, 0.55, 0.7, 0.75]):
        s, improved = update_early_stop(s, c, value, step=10 * (epoch + 1), epoch=epoch)
        seen.append(improved)
    assert seen == [True, False, True, False]
    assert (s.best_value, s.best_step, s.best_epoch, s.bad_epochs) == (0.7, 30, 2, 1)


def test_flat_metrics_prefixes_scalars_and_drops_bins():
    m = SplitMetrics(n_strings=4, loss=0.5, nll=0.25, token_acc=1.0, next_valid=1.0,
                     class_acc=0.75, class_baseline=0.5, string_acc=0.5, string_baseline=0.5,
                     state_acc=1.0)  # fmt: skip
    flat = flat_metrics("val", m)
    assert flat["val.nll"] == 0.25 and flat["val.n_strings"] == 4.0
    assert not any(k.endswith("bins") for k in flat)
