"""--set overrides: each key split and checked once, then handed on as an Override."""

from __future__ import annotations

import pytest

from fsmrun.base import overrides as ov
from fsmrun.experiments import load_experiment


def test_an_assignment_becomes_a_checked_path_and_a_typed_value():
    assert ov.parse_assignment("train.lr=0.01") == ov.Override(("train", "lr"), 0.01)
    assert ov.parse_assignment("data.alphabet=01").value == "01"  # a text field stays text
    assert ov.parse_assignment("train.patience=null").value is None
    assert ov.parse_assignment(" seed = 3").key == "seed"


def test_each_key_is_checked_once_from_the_command_line_to_the_config(monkeypatch):
    checked: list[str] = []
    real = ov._check_path

    def spy(key, path, *rest):
        checked.append(key)
        return real(key, path, *rest)

    monkeypatch.setattr(ov, "_check_path", spy)
    overrides = ov.collect_overrides(
        ["train.lr=0.01", "seed=3"], {"train.epochs": 5, "seed": 7, "train.batch_size": None}
    )
    exp = ov.apply_overrides(load_experiment("regex_a"), overrides)
    assert checked == ["train.lr", "seed", "train.epochs", "seed"]  # none twice, None flags skipped
    assert (exp.train.lr, exp.train.epochs, exp.seed) == (0.01, 5, 7)  # the flag wins


def test_a_mapping_is_checked_where_it_is_applied():
    exp = ov.apply_overrides(load_experiment("regex_a"), {"model.arch": "lstm"})
    assert exp.model.arch == "lstm"
    with pytest.raises(ov.OverrideError, match=r"unknown key 'model.arc'.*did you mean arch"):
        ov.apply_overrides(exp, {"model.arc": "lstm"})
    with pytest.raises(ov.OverrideError, match="train is a section"):
        ov.check_overrides({"train": 1})


def test_variants_equal_apply_overrides_and_share_the_sections_no_override_reaches():
    variants = ov.ConfigVariants()
    parity, tomita = load_experiment("parity"), load_experiment("tomita3")
    tomita = tomita.model_copy(update={"model": parity.model})  # two bases sharing a section
    overrides = {"model.arch": "lstm", "train.lr": 0.002, "seed": 4, "model.d_model": 16}
    made = [variants.apply(base, overrides) for base in (parity, tomita)]
    for base, exp in zip((parity, tomita), made, strict=True):
        expected = ov.apply_overrides(base, overrides)
        assert exp == expected and exp.model_dump_json() == expected.model_dump_json()
        assert exp.data is base.data  # untouched: passed on, not validated again
    assert made[0].model is made[1].model  # one (section, overrides) validated once
    assert (made[0].model.arch, made[0].model.d_model, made[1].train.lr) == ("lstm", 16, 0.002)
    assert variants.apply(parity, {}) is parity


def test_a_bad_variant_is_refused_with_the_message_of_apply_overrides():
    base = load_experiment("parity")
    bad = {"model.arch": "lstm", "model.d_model": -3}
    with pytest.raises(ov.OverrideError) as expected:
        ov.apply_overrides(base, bad)
    with pytest.raises(ov.OverrideError) as got:
        ov.ConfigVariants().apply(base, bad)
    assert str(got.value) == str(expected.value) and "model.d_model" in str(got.value)
    with pytest.raises(ov.OverrideError, match="did you mean arch"):
        ov.ConfigVariants().apply(base, {"model.arhc": "lstm"})
