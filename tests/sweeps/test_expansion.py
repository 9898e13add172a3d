"""Grid expansion gives the cells of the plain algorithm (every cell's overrides applied with
`apply_overrides` and hashed with `config_hash`): the same order, overrides, configs, config
JSON and hashes, and the same errors, though sections are shared and validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsmrun.base.hashing import config_hash
from fsmrun.base.overrides import apply_overrides
from fsmrun.experiments import load_experiment
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps.spec import SweepError, expand, language_files, sweep_hash


def plain_cells(spec: SweepSpec, files: list[Path]) -> list[tuple[str, dict, ExperimentConfig]]:
    """What expansion made before sections were shared: a full dump and validation per cell."""
    bases = []
    for source in spec.experiments:
        exp = load_experiment(source)
        for f in files:
            doc = exp.model_dump()
            for key in ("regex", "dfa", "att", "random_dfa", "alphabet"):
                doc["data"].pop(key, None)
            doc["data"]["att"] = {"path": str(f), "isymbols": spec.symbols}
            doc["name"] = f.stem
            bases.append((f"{source}@{f}", ExperimentConfig.model_validate(doc)))
    cells = []
    for source, base in bases:
        for case in spec.cases:
            for lr in spec.grid["train.lr"]:
                for arch in spec.grid["model.arch"]:
                    for seed in spec.seeds:
                        overrides = {**spec.set, **case, "train.lr": lr, "model.arch": arch}
                        overrides["seed"] = seed
                        cells.append((source, overrides, apply_overrides(base, overrides)))
    return cells


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for k, finals in enumerate(["0", "1", "0\n1"]):
        arcs = "0\t1\ta\ta\n1\t0\ta\ta\n0\t0\tb\tb\n1\t1\tb\tb\n"
        (tmp_path / f"04.04.SL.2.1.{k}.att").write_text(arcs + finals + "\n")
    (tmp_path / "alph.txt").write_text("<EPS>\t0\na\t1\nb\t2\n")
    return tmp_path


def test_cells_equal_those_of_applying_each_cells_overrides_in_full(folder):
    spec = SweepSpec(
        name="g",
        experiments=["regex_a", "parity"],
        languages=str(folder / "*.att"),
        symbols=str(folder / "alph.txt"),
        set={"data.n_train": 64, "model.d_model": 16, "train.epochs": 3},
        cases=[{"model.n_layers": 1}, {"model.n_layers": 2, "train.epochs": 4}],
        grid={"train.lr": [0.01, 0.002], "model.arch": ["transformer", "lstm", "gru"]},
        seeds=[3, 0],
    )
    cells = expand(spec)
    plain = plain_cells(spec, language_files(spec.languages))
    assert len(cells) == len(plain) == 2 * 3 * 2 * 2 * 3 * 2
    for cell, (source, overrides, exp) in zip(cells, plain, strict=True):
        assert (cell.experiment, cell.overrides) == (source, overrides)
        assert list(cell.overrides) == list(overrides)  # recorded in this key order
        assert cell.config == exp
        assert cell.config.model_dump_json() == exp.model_dump_json()  # what workers train
        assert cell.config_hash == config_hash(exp) == config_hash(cell.config)
    assert [c.index for c in cells] == list(range(len(cells)))
    assert len({c.config_hash for c in cells}) == len(cells)
    # one model section per (experiment, case, arch), shared by every file's and seed's cells
    assert len({id(c.config.model) for c in cells}) == 2 * 2 * 3
    assert sweep_hash(cells) == sweep_hash(expand(spec))


def test_a_bad_value_or_seed_is_refused_as_before(tiny):
    with pytest.raises(SweepError) as err:
        expand(SweepSpec(name="t", experiments=[tiny], grid={"model.d_model": [8, -1]}))
    assert str(err.value) == (
        f"{tiny} with {{'model.d_model': -1, 'seed': 0}}: invalid value: model.d_model: "
        "Input should be greater than or equal to 1 (got -1)"
    )
    with pytest.raises(SweepError, match=r"'seed': -2}: invalid value: seed: Input should be"):
        expand(SweepSpec(name="t", experiments=[tiny], seeds=[0, -2]))
