"""The quick suites train: one cell per task (membership, final output, character prediction),
through the same entry point as a sweep cell. Small on purpose: CI runs it."""

from __future__ import annotations

import pytest

from fsmrun.schemas.records import Metrics
from fsmrun.sweeps.spec import expand, load_spec
from fsmrun.train.loop import train_one_experiment

# (suite, experiment, arch): the encoder on a membership task, the LSTM on a final-output one
# and on character prediction.
PICKS = [
    ("deletang_quick", "parity", "transformer"),
    ("deletang_quick", "cycle_navigation", "lstm"),
    ("tomita_quick", "tomita6_cp", "lstm"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("suite", "experiment", "arch"), PICKS)
def test_a_quick_suite_cell_trains_to_completion(tmp_path, suite, experiment, arch) -> None:
    cells = [
        c
        for c in expand(load_spec(suite))
        if c.config.name == experiment and c.config.model.arch == arch
    ]
    assert len(cells) == 1
    exp = cells[0].config
    result = train_one_experiment(exp, device="cpu", results_root=tmp_path, progress=False)
    assert result.status == "completed"
    metrics = Metrics.model_validate_json((result.run_dir / "metrics.json").read_text())
    assert metrics.evaluated == exp.train.evaluate_checkpoint
    reported = metrics.last if metrics.evaluated == "last" else metrics.best
    ood = reported.test_ood
    assert ood.n_strings == exp.data.n_test_ood
    assert ood.length_mean_acc is not None and 0.0 <= ood.length_mean_acc <= 1.0
    if exp.train.sampling == "stream":
        assert result.steps == exp.train.epochs * exp.train.stream_steps
        assert not exp.model.causal or arch != "transformer"
