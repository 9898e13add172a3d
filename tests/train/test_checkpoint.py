"""Checkpoints: exact round trip, weights_only loading, corruption detection and fallback."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fsmrun.schemas.records import CheckpointMeta, EarlyStopState
from fsmrun.train.checkpoint import (
    CKPT_FORMAT,
    KEY_MODEL,
    CheckpointError,
    load_ckpt,
    read_ckpt,
    save_ckpt,
)


def _meta(step: int) -> CheckpointMeta:
    return CheckpointMeta(
        kind="last",
        step=step,
        epoch=1,
        batch_in_epoch=3,
        epoch_done=False,
        history_len=7,
        next_batch_fingerprint="ab" * 32,
        early_stop=EarlyStopState(monitor="val.string_acc", mode="max", best_value=0.5),
        config_hash="0" * 64,
        fsmrun_version="test",
        wall_time_s=1.5,
    )


def _model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(torch.randn(5, 4)).square().mean()
    loss.backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_rng_and_meta(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(6)
    running = {"sums": torch.tensor([1.0, 2.0]), "count": torch.tensor(3)}
    path = save_ckpt(
        tmp_path / "last.pt", model, optimizer, meta=_meta(11), config_json="{}", running=running
    )
    expected = (torch.rand(3), random.random(), np.random.rand())

    fresh, fresh_opt = _model_and_optimizer(1)
    loaded = load_ckpt(path, fresh, fresh_opt, restore_rng=True)

    assert loaded.meta == _meta(11)
    assert loaded.config_json == "{}"
    assert torch.equal(loaded.running["sums"], running["sums"])
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == (
        expected[0].tolist(),
        expected[1],
        expected[2],
    )
    # One more identical step on both keeps them bitwise equal (optimizer state restored).
    x = torch.randn(5, 4)
    for m, o in ((model, optimizer), (fresh, fresh_opt)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_loads_with_weights_only_and_no_allow_list(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = save_ckpt(tmp_path / "last.pt", model, optimizer, meta=_meta(1), config_json="{}")
    outer = torch.load(path, weights_only=True, map_location="cpu")
    assert outer["format"] == CKPT_FORMAT
    _, inner = read_ckpt(path)
    assert set(inner[KEY_MODEL]) == set(model.state_dict())


def test_corrupt_checkpoint_falls_back_to_previous_good_one(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = tmp_path / "last.pt"
    save_ckpt(path, model, optimizer, meta=_meta(1), config_json="{}")
    save_ckpt(path, model, optimizer, meta=_meta(2), config_json="{}")
    assert (tmp_path / "last.prev.pt").exists()

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the payload
    path.write_bytes(bytes(data))

    loaded = load_ckpt(path, model)
    assert loaded.path.name == "last.prev.pt"
    assert loaded.meta.step == 1
    with pytest.raises(CheckpointError):
        load_ckpt(path, model, fallback=False)


def test_truncated_checkpoint_is_detected(tmp_path):
    model, optimizer = _model_and_optimizer()
    path = save_ckpt(tmp_path / "best.pt", model, optimizer, meta=_meta(1), config_json="{}")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        read_ckpt(path)


def test_save_leaves_no_temporary_files(tmp_path):
    model, optimizer = _model_and_optimizer()
    for step in range(3):
        save_ckpt(tmp_path / "last.pt", model, optimizer, meta=_meta(step), config_json="{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]
