"""ExperimentConfig rejects bad input when it is validated, before any run folder exists."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from fsmrun.base.hashing import config_hash
from fsmrun.experiments import load_experiment
from fsmrun.schemas.config import (
    MONITOR_METRICS,
    RESERVED_NAMES,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
)

EXPERIMENTS = Path(__file__).resolve().parents[2] / "fsmrun" / "experiments"
DATA = {"regex": "(ab)*", "alphabet": "ab", "min_len": 0, "max_len": 4, "ood_min_len": 5}


def experiment(name: str = "ok", **train: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": name, "data": DATA, "train": train})


def message(err: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.value.errors())


# --- experiment name: one safe folder name under the results root ---


@pytest.mark.parametrize(
    "name",
    [".", "..", ".hidden", ".cache", "a/b", "../x", "a b", "", "x" * 101, "-x"]
    + ["sweeps", "audits", "plots", "registry.sqlite", "registry.sqlite-wal", "AUDITS"],
)
def test_names_that_are_not_a_single_safe_folder_name_are_rejected(name):
    with pytest.raises(ValidationError) as err:
        experiment(name)
    text = message(err)
    assert text.startswith("name: ")
    assert "letters, digits, '_', '-' and '.'" in text and "at most 100" in text


@pytest.mark.parametrize("name", ["regex_a", "a.b-c_1", "x" * 100, "v1", "Sweeps2"])
def test_ordinary_names_are_accepted(name):
    assert experiment(name).name == name


def test_reserved_names_cover_what_the_results_root_holds():
    assert {"sweeps", "audits", "plots", "registry.sqlite"} <= set(RESERVED_NAMES)


# --- train: finite floats, betas, monitor, capture epochs, warmup ---


@pytest.mark.parametrize(
    "field",
    ["lr", "weight_decay", "eps", "min_delta", "grad_clip", "stop_threshold"]
    + ["lambda_next", "lambda_class", "lambda_state", "lambda_l1_u", "min_lr_ratio"],
)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_field_of_train_must_be_finite(field, value):
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({field: value})
    assert err.value.errors()[0]["loc"] == (field,)


def test_infinite_lr_from_a_string_is_rejected_like_the_cli_passes_it():
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"lr": "inf"})
    assert "finite" in message(err)


@pytest.mark.parametrize(
    "betas, where",
    [((2, 3), ("betas", 0)), ((0.9, 1.0), ("betas", 1)), ((-0.1, 0.9), ("betas", 0))],
)
def test_betas_must_each_lie_in_zero_to_one(betas, where):
    with pytest.raises(ValidationError) as err:
        TrainConfig(betas=betas)
    assert err.value.errors()[0]["loc"] == where


def test_betas_at_the_open_ends_are_accepted():
    assert TrainConfig(betas=(0.0, 0.999)).betas == (0.0, 0.999)


def test_unknown_monitor_is_rejected_with_the_valid_names():
    with pytest.raises(ValidationError) as err:
        TrainConfig(monitor="val.strng_acc")
    text = message(err)
    assert "'val.strng_acc'" in text
    assert "val.string_acc" in text and "val.nll" in text and "val.state_acc" in text


@pytest.mark.parametrize("monitor", ["test.string_acc", "val.n_strings", "val.bins", "string_acc"])
def test_monitor_outside_the_validation_metrics_is_rejected(monitor):
    with pytest.raises(ValidationError):
        TrainConfig(monitor=monitor)


@pytest.mark.parametrize("legal_next", [False, True])
def test_monitor_names_are_the_keys_flat_metrics_gives_on_a_real_evaluation(legal_next):
    import torch

    from fsmrun.data.encoding import Vocab, encode_split, legal_next_table
    from fsmrun.lang.fsm import compile_regex
    from fsmrun.nn.model import build_model
    from fsmrun.schemas.config import CHAR_METRICS, ModelConfig
    from fsmrun.train.early_stop import flat_metrics
    from fsmrun.train.evaluate import evaluate

    dfa, vocab = compile_regex("a*b", "ab"), Vocab("ab")
    split = encode_split("val", ["ab", "ba", "b", "aab"], None, dfa, vocab, "cpu")
    legal = legal_next_table(dfa, vocab, "cpu")
    model = build_model(
        ModelConfig(d_model=8, n_layers=1, n_heads=2, d_ff=8),
        vocab_size=5,
        num_states=3,
        generator=torch.Generator().manual_seed(0),
        legal_next=legal_next,
    )
    metrics = evaluate(model, split, legal, TrainConfig(), batch_size=4, length_bins=None)
    keys = set(flat_metrics("val", metrics)) - {"val.n_strings"}  # a count, not a metric
    # The char_* metrics exist only with the legal-next head (task char_prediction).
    expected = [m for m in MONITOR_METRICS if legal_next or m not in CHAR_METRICS]
    assert keys == {f"val.{name}" for name in expected}


def test_every_monitor_name_is_accepted():
    for name in MONITOR_METRICS:
        assert TrainConfig(monitor=f"val.{name}").monitor == f"val.{name}"


@pytest.mark.parametrize("epochs", [[0], [-1], [4], [1, 5]])
def test_capture_epochs_must_name_epochs_of_the_run(epochs):
    with pytest.raises(ValidationError) as err:
        TrainConfig(epochs=3, capture_epochs=epochs)
    assert "capture_epochs" in message(err) and "1 to 3" in message(err)


def test_capture_epochs_count_from_one_like_the_console():
    assert TrainConfig(epochs=3, capture_epochs=[1, 3]).capture_epochs == [1, 3]


def test_warmup_beyond_a_million_steps_is_rejected():
    assert TrainConfig(warmup_steps=1_000_000).warmup_steps == 1_000_000
    with pytest.raises(ValidationError) as err:
        TrainConfig(warmup_steps=100_000_000)
    assert err.value.errors()[0]["loc"] == ("warmup_steps",)


# --- data: alphabet symbols ---


@pytest.mark.parametrize(
    "alphabet, bad",
    [("ab*", "*"), ("a b", " "), ("a.", "."), ("(a", "("), ("a\\", "\\"), ("a\tb", "\t")]
    + [("a|b", "|"), ("ab$", "$"), ("a^", "^"), ("a{", "{"), ("a\x00", "\x00")],
)
def test_alphabet_symbols_must_not_be_regex_syntax_or_whitespace(alphabet, bad):
    with pytest.raises(ValidationError) as err:
        DataConfig(regex="a", alphabet=alphabet)
    assert repr(bad) in message(err)


def test_alphabet_with_a_repeated_symbol_names_it():
    with pytest.raises(ValidationError) as err:
        DataConfig(regex="a", alphabet="aba")
    assert "'a'" in message(err)


def test_ordinary_alphabets_are_accepted():
    assert DataConfig(regex="0|1", alphabet="01xyzé-,").alphabet == "01xyzé-,"


# --- nothing that validated before changes ---


# Hashes of the built-in experiments before these checks existed: validators only reject.
# parity and even_pairs were redefined after Deletang et al. (uniform sampling, LSTM, lengths
# 1-40 / 41-100); their hashes changed with them and are not pinned here.
BUILT_IN_HASHES = {
    "regex_a": "8beeb3967532",
    "regex_b": "2540504697da",
    "tomita1": "14c40f06c1bc",
    "tomita2": "9585f785d662",
    "tomita3": "dc7552bbb488",
    "tomita4": "3605cc67bf13",
    "tomita5": "4f6a5bc2b058",
    "tomita6": "dc11455d779c",
    "tomita7": "a9efc4a32388",
}


def test_every_built_in_experiment_still_validates_with_its_hash():
    hashes = {
        path.stem: config_hash(load_experiment(str(path)))[:12]
        for path in sorted(EXPERIMENTS.glob("*.toml"))
    }
    assert {name: hashes[name] for name in BUILT_IN_HASHES} == BUILT_IN_HASHES
    assert len(set(hashes.values())) == len(hashes)


def test_regex_a_keeps_its_full_config_hash():
    assert config_hash(load_experiment("regex_a")) == (
        "8beeb3967532581eeecde03f7ad2497443ec083359e362c40d6137ec774daf80"
    )


def test_task_sampling_and_class_loss_fields_stay_out_of_the_dump_at_their_defaults():
    exp = load_experiment("regex_a")
    data = exp.data.model_dump()
    train = exp.train.model_dump()
    assert "task" not in data and "sampling" not in data
    assert "class_loss_on" not in train and "lambda_legal" not in train
    assert exp.data.task == "membership" and exp.data.sampling == "balanced"
    assert exp.train.class_loss_on == "all" and exp.train.lambda_legal == 1.0


def test_a_non_default_task_sampling_or_loss_position_changes_the_hash():
    exp = load_experiment("regex_a")
    base = config_hash(exp)
    variants = [
        {"data": exp.data.model_copy(update={"task": "final_output"})},
        {"data": exp.data.model_copy(update={"sampling": "uniform"})},
        {"train": exp.train.model_copy(update={"class_loss_on": "final"})},
        {"train": exp.train.model_copy(update={"lambda_legal": 0.5})},
    ]
    hashes = {config_hash(exp.model_copy(update=change)) for change in variants}
    assert base not in hashes and len(hashes) == len(variants)
    dumped = exp.model_copy(update=variants[0]).model_dump()
    assert dumped["data"]["task"] == "final_output"
    # The dump reloads to the same config, defaults included.
    assert ExperimentConfig.model_validate(exp.model_dump()) == exp


def test_the_rnn_cell_options_stay_out_of_the_dump_at_their_defaults_and_hash_otherwise():
    exp = load_experiment("parity")  # an LSTM experiment: as the deletang suite's RNN case
    tanh = exp.model_copy(update={"model": exp.model.model_copy(update={"arch": "rnn"})})
    dump = tanh.model.model_dump()
    assert "rnn_nonlinearity" not in dump and "rnn_init" not in dump
    hashes = {config_hash(tanh)}
    for name, value in (("rnn_nonlinearity", "relu"), ("rnn_init", "haiku")):
        changed = tanh.model_copy(update={"model": tanh.model.model_copy(update={name: value})})
        assert changed.model.model_dump()[name] == value
        assert ExperimentConfig.model_validate(changed.model_dump()) == changed
        hashes.add(config_hash(changed))
    assert len(hashes) == 3


def test_character_prediction_is_monitored_by_its_own_metrics():
    data = {"regex": "a*b", "alphabet": "ab", "task": "char_prediction"}
    with pytest.raises(ValidationError, match="val.char_acc"):
        ExperimentConfig(name="x", data=data)
    exp = ExperimentConfig(name="x", data=data, train={"monitor": "val.char_acc"})
    assert exp.data.task == "char_prediction"
    with pytest.raises(ValidationError, match="needs data.task = 'char_prediction'"):
        ExperimentConfig(
            name="x", data={**data, "task": "membership"}, train={"monitor": "val.char_acc"}
        )
