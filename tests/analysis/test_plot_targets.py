"""`fsmrun plot`'s decision in core: whether the arguments name one run, several or a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import HASH_A, HASH_B, claim_empty_run_folder, make_record, write_record

from fsmrun.analysis.plots.targets import PlotTarget, plot_target
from fsmrun.base.errors import UserError
from fsmrun.sweeps import coordinator
from fsmrun.sweeps.spec import expand, inline_spec


def new_run(root: Path, experiment: str, config_hash: str) -> Path:
    folder, version = claim_empty_run_folder(root, experiment, config_hash)
    write_record(folder, make_record(experiment, config_hash, version))
    return folder.resolve()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    new_run(root, "regex_a", HASH_A)
    new_run(root, "regex_a", HASH_B)
    new_run(root, "parity", HASH_A)
    return root


def test_one_run_several_runs_and_experiments(root):
    a, b = (root / "regex_a" / h[:12] / "v1" for h in (HASH_A, HASH_B))
    assert plot_target(root, ["regex_a-a1b2"], []) == PlotTarget("run", [a])
    assert plot_target(root, ["regex_a-a1b2", str(b)], []) == PlotTarget("runs", [a, b])
    parity = root / "parity" / HASH_A[:12] / "v1"
    # every run of the experiments, each once
    assert plot_target(root, [str(b)], ["parity", "regex_a"]) == PlotTarget("runs", [b, parity, a])


@pytest.mark.parametrize(
    ("refs", "experiments", "sweep", "out", "message"),
    [
        ([], [], None, None, "give a run"),
        (["regex_a-a1b2"], [], None, Path("figs"), "--out is for figures comparing"),
        (["regex_a-a1b2"], [], "s", None, "--sweep plots one sweep's runs"),
        ([], ["tomita1"], None, None, "no runs of experiment 'tomita1'"),
    ],
)
def test_arguments_that_name_nothing_to_draw_are_refused(
    root, refs, experiments, sweep, out, message
):
    with pytest.raises(UserError, match=message):
        plot_target(root, refs, experiments, sweep, out)


def _sweep(root: Path, name: str) -> None:
    spec = inline_spec(["regex_a"], {}, [0], {}, name)
    coordinator.write_record(root, coordinator.sweep_status(root, spec, expand(spec), None))


def test_a_single_name_of_a_sweep_plots_the_sweep_unless_it_also_names_a_run(root):
    _sweep(root, "later")
    assert plot_target(root, ["later"], []) == PlotTarget("sweep", sweep="later")
    assert plot_target(root, [], [], "later") == PlotTarget("sweep", sweep="later")
    _sweep(root, "regex_a")  # also a prefix of two runs
    with pytest.raises(UserError, match="'regex_a' names a sweep and is a prefix of 2 runs"):
        plot_target(root, ["regex_a"], [])
