"""Built-in experiments: they load, match their files, compile and generate; loader errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from fsmrun.data.sampling import generate_corpus
from fsmrun.experiments import (
    ExperimentFileError,
    ExperimentNotFound,
    list_experiments,
    load_experiment,
)
from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import compile_regex
from fsmrun.schemas.config import ExperimentConfig

EXPECTED = [
    "cycle_navigation",
    "even_pairs",
    "modular_arithmetic",
    "parity",
    "regex_a",
    "regex_b",
    *[name for i in range(1, 8) for name in (f"tomita{i}", f"tomita{i}_cp")],
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
    dfa = build_dfa(exp.data)
    corpus = generate_corpus(dfa, exp.data, exp.seed)
    assert corpus.num_strings("train") == exp.data.n_train
    assert corpus.num_strings("test_ood") == exp.data.n_test_ood
    if exp.data.sampling == "positives":
        assert corpus.labels("train").all() and corpus.labels("test_ood").all()
    else:
        assert 0 < corpus.labels("train").sum() < exp.data.n_train


def test_deletang_builtins_follow_the_protocol() -> None:
    """Train lengths 1-40, OOD from 41, the LSTM, only the class loss, no early stop."""
    for name in ("parity", "even_pairs", "cycle_navigation", "modular_arithmetic"):
        exp = load_experiment(name)
        d, t = exp.data, exp.train
        assert (d.min_len, d.max_len, d.ood_min_len, d.ood_max_len) == (1, 40, 41, 100)
        assert d.sampling == ("positives" if name == "modular_arithmetic" else "uniform")
        assert exp.model.arch == "lstm"
        assert (t.lambda_next, t.lambda_state) == (0.0, 0.0)
        assert t.patience is not None and t.patience >= t.epochs  # cannot fire before the end
    assert load_experiment("cycle_navigation").data.task == "final_output"


def test_parity_lstm_reads_unit_scale_embeddings_and_suites_keep_the_transformers() -> None:
    # parity's LSTM needs N(0, 1) embeddings (at 0.02 it forgot the parity over long runs of
    # b); the suites' transformer cells on parity keep the transformer's 0.02.
    from fsmrun.sweeps.spec import expand, load_spec

    parity = load_experiment("parity")
    assert parity.model.embed_init_std == 1.0 and parity.train.lr == 1e-2
    assert parity.train.evaluate_checkpoint == "last"
    for suite in ("deletang", "deletang_quick", "deletang_regular"):
        cells = [c.config for c in expand(load_spec(suite)) if c.config.name == "parity"]
        stds = {c.model.arch: c.model.embed_init_std for c in cells}
        assert stds["transformer"] == 0.02 and stds["lstm"] == 1.0, suite


def test_every_built_in_cell_keeps_the_checkpoint_its_monitor_calls_best() -> None:
    # An accuracy monitored with mode "min" saves the worst checkpoint as best.pt (the
    # deletang suites did so on cycle navigation and modular arithmetic).
    from fsmrun.sweeps.spec import expand, list_suites, load_spec

    configs = [load_experiment(name) for name in list_experiments()]
    configs += [cell.config for suite in list_suites() for cell in expand(load_spec(suite))]
    lower_is_better = ("val.loss", "val.nll")
    wrong = {
        (exp.name, exp.train.monitor, exp.train.monitor_mode)
        for exp in configs
        if exp.train.monitor_mode != ("min" if exp.train.monitor in lower_is_better else "max")
    }
    assert len(configs) > 200 and wrong == set()


def test_cycle_navigation_and_modular_arithmetic_label_as_the_papers() -> None:
    cycle = build_dfa(load_experiment("cycle_navigation").data)
    # start at 0: >>> -> 3, < -> 4, >0<< -> 4, five steps right -> 0
    for actions, position in ((">>>", 3), ("<", 4), (">0<<", 4), (">>>>>", 0), ("", 0)):
        assert cycle.output_names[cycle.output_of(actions)] == str(position)
    arith = build_dfa(load_experiment("modular_arithmetic").data)
    cases = {"3p4t2m1": "0", "4t4t4": "4", "2m3": "4", "1p2t3t4": "0", "3p": "invalid"}
    for expression, value in cases.items():  # 3+4*2-1 = 10, 64, -1, 1+24 = 25
        assert arith.output_names[arith.output_of(expression)] == value


def test_tomita_character_prediction_builtins_score_the_legal_sets() -> None:
    for i in range(1, 8):
        exp = load_experiment(f"tomita{i}_cp")
        assert exp.data.task == "char_prediction" and exp.data.sampling == "positives"
        assert exp.data.regex == load_experiment(f"tomita{i}").data.regex
        assert exp.train.monitor in ("val.char_acc", "val.loss")


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
