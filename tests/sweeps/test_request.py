"""`fsmrun sweep`'s decisions in core: what an argument names, the spec of a command line,
the executor of a backend, the record a status reference names."""

from __future__ import annotations

import pytest

from fsmrun.sweeps.executors import RayExecutor, SerialExecutor, threads_per_worker
from fsmrun.sweeps.pool import LocalExecutor
from fsmrun.sweeps.request import (
    is_spec,
    make_executor,
    parse_grid,
    spec_from_args,
    status_record,
)
from fsmrun.sweeps.spec import SweepError


def test_an_argument_names_a_spec_only_when_it_is_a_suite_or_a_toml_with_experiments(
    tiny, tmp_path
):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'experiments = ["{tiny}"]\nseeds = [0]\n')
    broken = tmp_path / "b.toml"
    broken.write_text("experiments = [\n")
    assert is_spec("tomita") and is_spec(str(sweep))
    assert not is_spec(tiny)  # an experiment file
    assert not is_spec("parity")  # a built-in experiment, not a suite
    assert not is_spec(str(broken)) and not is_spec(str(tmp_path / "missing.toml"))


def test_the_spec_of_a_command_line(tiny):
    suite = spec_from_args(["tomita"], ["train.lr=0.1,0.01"], "0-1", ["train.epochs=2"], None)
    assert suite.name == "tomita" and suite.seeds == [0, 1]
    assert suite.grid["train.lr"] == [0.1, 0.01] and suite.set["train.epochs"] == 2
    inline = spec_from_args([tiny], [], None, [], "mine")
    assert (inline.name, inline.experiments, inline.seeds) == ("mine", [tiny], [0])
    assert parse_grid(["model.arch=lstm,gru"]) == {"model.arch": ["lstm", "gru"]}
    with pytest.raises(SweepError, match="--grid expects key=v1,v2"):
        parse_grid(["model.arch"])
    with pytest.raises(SweepError, match="give a sweep spec"):
        spec_from_args([], [], None, [], None)


def test_the_executor_of_a_backend():
    assert isinstance(make_executor("local", 1), SerialExecutor)
    pool = make_executor("local", 3)
    assert isinstance(pool, LocalExecutor) and pool.workers == 3
    ray = make_executor("ray", 2)
    assert isinstance(ray, RayExecutor) and ray.cpus_per_task == threads_per_worker(2)
    assert make_executor("ray", 2, address="auto").cpus_per_task == 1  # a cluster: 1 per cell
    with pytest.raises(SweepError, match="--backend must be local or ray, got 'slurm'"):
        make_executor("slurm")


def test_status_of_a_spec_never_run_reads_its_cells_from_the_run_folders(tiny, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'experiments = ["{tiny}"]\nseeds = [0, 1, 2]\n')
    record = status_record(tmp_path / "results", str(sweep))
    assert record.counts["todo"] == 3 and len(record.cells) == 3
    assert not (tmp_path / "results").exists()  # status writes nothing
    with pytest.raises(SweepError, match="no sweep 'nothing'"):
        status_record(tmp_path / "results", "nothing")
