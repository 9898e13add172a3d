"""Seeding and hashing: the switches of each mode, independent streams, config hashes."""

from __future__ import annotations

import os

import torch

from fsmrun.base.hashing import config_hash
from fsmrun.base.seeding import (
    derive_seed,
    hash_tensors,
    numpy_rng,
    set_seed,
)
from fsmrun.schemas.config import DataConfig, ExperimentConfig


def _exp(**train) -> ExperimentConfig:
    return ExperimentConfig(
        name="x", data=DataConfig(regex="a*b", alphabet="ab"), train=train or {}
    )


def test_set_seed_deterministic_mode_sets_every_switch(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        set_seed(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        set_seed(3, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False


def test_set_seed_makes_the_global_torch_stream_repeatable():
    set_seed(11, deterministic=False)
    first = torch.rand(4)
    set_seed(11, deterministic=False)
    assert torch.equal(first, torch.rand(4))
    set_seed(12, deterministic=False)
    assert not torch.equal(first, torch.rand(4))


def test_named_streams_are_independent_and_pure():
    assert derive_seed(0, "data") == derive_seed(0, "data")
    seeds = {derive_seed(0, s) for s in ("data", "init", "batch_order", "dropout")}
    assert len(seeds) == 4
    assert derive_seed(0, "batch_order", 1) != derive_seed(0, "batch_order", 2)
    assert numpy_rng(5, "data").integers(1 << 30) == numpy_rng(5, "data").integers(1 << 30)


def test_config_hash_ignores_names_and_logging_but_not_numbers():
    base = config_hash(_exp())
    assert config_hash(_exp().model_copy(update={"name": "y", "description": "z"})) == base
    assert config_hash(_exp(log_every=7, save_every=3)) == base
    assert config_hash(_exp(lr=1e-4)) != base
    assert config_hash(_exp().model_copy(update={"seed": 1})) != base


def test_hash_tensors_sees_values_dtypes_and_shapes():
    a = {"w": torch.zeros(2, 3)}
    assert hash_tensors(a) == hash_tensors({"w": torch.zeros(2, 3)})
    assert hash_tensors(a) != hash_tensors({"w": torch.zeros(3, 2)})
    assert hash_tensors(a) != hash_tensors({"w": torch.zeros(2, 3, dtype=torch.float64)})
    assert hash_tensors(a) != hash_tensors({"w": torch.ones(2, 3)})
    assert len(hash_tensors({"s": torch.tensor(1.0)})) == 64
