"""Built-in experiments: they load, match their files, compile and generate; loader errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from fsmrun.core.datagen import generate_corpus
from fsmrun.core.fsm import compile_regex
from fsmrun.experiments import (
    ExperimentFileError,
    ExperimentNotFound,
    list_experiments,
    load_experiment,
)
from fsmrun.schemas.config import ExperimentConfig

EXPECTED = [
    "even_pairs",
    "parity",
    "regex_a",
    "regex_b",
    *[f"tomita{i}" for i in range(1, 8)],
]


def test_list_experiments_names_every_builtin() -> None:
    assert list_experiments() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_builtin_loads_compiles_and_generates_its_corpus(name: str) -> None:
    text = resources.files("fsmrun.experiments").joinpath(f"{name}.toml").read_text()
    assert f'name = "{name}"' in text  # the name is written in the file, not defaulted
    exp = load_experiment(name)
    assert isinstance(exp, ExperimentConfig)
    assert exp.name == name and exp.description
    dfa = compile_regex(exp.data.regex, exp.data.alphabet, max_states=exp.data.max_states)
    corpus = generate_corpus(dfa, exp.data, exp.seed)
    assert corpus.num_strings("train") == exp.data.n_train
    assert corpus.num_strings("test_ood") == exp.data.n_test_ood
    assert 0 < corpus.labels("train").sum() < exp.data.n_train


def test_builtins_cover_contrasting_languages() -> None:
    a, b = load_experiment("regex_a").data, load_experiment("regex_b").data
    dfa_a = compile_regex(a.regex, a.alphabet)
    dfa_b = compile_regex(b.regex, b.alphabet)
    assert dfa_a.dead is None and dfa_b.dead is not None
    assert dfa_a.alphabet != dfa_b.alphabet


def test_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(ExperimentNotFound, match="did you mean 'tomita3'"):
        load_experiment("tomita33")
    with pytest.raises(ExperimentNotFound, match="did you mean 'parity'"):
        load_experiment("partiy")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ExperimentNotFound, match="no experiment file"):
        load_experiment(str(tmp_path / "nope.toml"))


def test_file_loads_and_defaults_its_name_to_the_stem(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[data]\nregex = "a*b"\nalphabet = "ab"\n\n[train]\nepochs = 3\n')
    exp = load_experiment(str(path))
    assert exp.name == "mine"
    assert exp.data.regex == "a*b" and exp.train.epochs == 3 and exp.model.n_layers == 2


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "broken"\n[data\nregex = "a"\n')
    with pytest.raises(ExperimentFileError, match=r"broken\.toml: malformed TOML"):
        load_experiment(str(path))


def test_invalid_value_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[data]\nregex = "a*"\nalphabet = "ab"\nn_train = 0\n')
    with pytest.raises(ExperimentFileError) as err:
        load_experiment(str(path))
    message = str(err.value)
    assert "bad.toml" in message and "data.n_train" in message and "(got 0)" in message


def test_unknown_field_and_cross_field_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[data]\nregex = "a*"\nalphabet = "ab"\nmax_length = 5\n')
    with pytest.raises(ExperimentFileError, match=r"typo\.toml: .*data\.max_length"):
        load_experiment(str(path))
    path.write_text('[data]\nregex = "a*"\nalphabet = "ab"\nmin_len = 9\nmax_len = 3\n')
    with pytest.raises(ExperimentFileError, match=r"data: min_len \(9\) exceeds max_len \(3\)"):
        load_experiment(str(path))
