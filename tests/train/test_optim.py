"""AdamW param groups, the learning-rate schedule, gradient clipping, optimizer state round trip."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from fsmrun.schemas.config import TrainConfig
from fsmrun.train.optim import (
    build_optimizer,
    clip_gradients,
    lr_at,
    optimizer_from_config,
    param_group_names,
    set_lr,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.tok_embed = nn.Embedding(5, 4)
        self.pos = nn.Embedding(3, 4)  # an nn.Embedding without "embed" in its name
        self.embed_u = nn.Parameter(torch.randn(5, 2, generator=generator))
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 5, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, ids_bxt: torch.Tensor) -> torch.Tensor:
        h = self.tok_embed(ids_bxt) + self.pos(torch.arange(ids_bxt.shape[1]))
        return self.head(self.proj(self.norm(h)))


def loss_of(model: nn.Module) -> torch.Tensor:
    ids_bxt = torch.tensor([[1, 3, 4], [1, 4, 2]])
    return model(ids_bxt).square().mean() + model.embed_u.abs().sum()


def test_only_matrices_decay_by_default() -> None:
    names = param_group_names(Tiny())
    assert names == {
        "decay": ["proj.weight", "head.weight"],
        "no_decay": ["embed_u", "tok_embed.weight", "pos.weight", "norm.weight", "norm.bias",
                     "proj.bias"],
    }  # fmt: skip
    optimizer = build_optimizer(Tiny(), 1e-3, 0.1, (0.9, 0.95))
    decay, no_decay = optimizer.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert (len(decay["params"]), len(no_decay["params"])) == (2, 6)


def test_decay_all_puts_every_trainable_parameter_in_the_decay_group() -> None:
    names = param_group_names(Tiny(), decay_all=True)
    assert len(names["decay"]) == 8 and names["no_decay"] == []
    cfg = TrainConfig(decay_all_params=True, weight_decay=0.2, lr=0.01, betas=(0.8, 0.9), eps=1e-6)
    optimizer = optimizer_from_config(Tiny(), cfg)
    assert [len(g["params"]) for g in optimizer.param_groups] == [8, 0]
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        0.01,
        (0.8, 0.9),
        1e-6,
        0.2,
    )


def test_warmup_boundaries() -> None:
    cfg = TrainConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg, 100) == pytest.approx(0.1)
    assert lr_at(4, cfg, 100) == pytest.approx(0.5)
    assert lr_at(9, cfg, 100) == 1.0  # warmup - 1 reaches the peak
    assert lr_at(10, cfg, 100) == 1.0  # decay starts from the peak
    assert lr_at(55, cfg, 100) == pytest.approx(0.55)  # cosine midpoint: (1 + 0.1) / 2
    assert lr_at(100, cfg, 100) == pytest.approx(0.1)
    assert lr_at(500, cfg, 100) == pytest.approx(0.1)


def test_no_warmup_starts_at_the_peak() -> None:
    cfg = TrainConfig(lr=2.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert lr_at(0, cfg, 10) == 2.0
    assert lr_at(5, cfg, 10) == pytest.approx(1.0)
    assert lr_at(10, cfg, 10) == 0.0


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_schedules_rise_then_never_increase_and_end_at_their_floor(schedule: str) -> None:
    cfg = TrainConfig(lr=3e-3, warmup_steps=7, schedule=schedule, min_lr_ratio=0.2)
    total = 60
    lrs = [lr_at(step, cfg, total) for step in range(total + 1)]
    warmup, decay = lrs[:7], lrs[7:]
    assert all(a < b for a, b in zip(warmup, warmup[1:], strict=False))
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    floor = 3e-3 if schedule == "constant" else 3e-3 * 0.2
    assert lrs[-1] == pytest.approx(floor)
    assert min(decay) >= floor - 1e-15 and max(lrs) == pytest.approx(3e-3)


def test_schedule_is_a_pure_function_of_the_step() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_steps=5, schedule="cosine")
    forward = [lr_at(s, cfg, 40) for s in range(40)]
    backward = [lr_at(s, cfg, 40) for s in reversed(range(40))]
    assert forward == backward[::-1]


def test_set_lr_and_step_count() -> None:
    model = Tiny()
    cfg = TrainConfig(lr=1e-2, warmup_steps=3, schedule="linear")
    optimizer = optimizer_from_config(model, cfg)
    for step in range(5):
        set_lr(optimizer, lr_at(step, cfg, 5))
        optimizer.zero_grad()
        loss_of(model).backward()
        optimizer.step()
        assert [g["lr"] for g in optimizer.param_groups] == [lr_at(step, cfg, 5)] * 2
    state = optimizer.state[model.proj.weight]
    assert int(state["step"]) == 5


def test_clip_gradients_returns_the_pre_clip_norm() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, 2))
    untouched = nn.Parameter(torch.zeros(3))  # no gradient: skipped
    a.grad = torch.tensor([3.0, 0.0])
    b.grad = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    norm = clip_gradients([a, b, untouched], max_norm=None)
    assert isinstance(norm, torch.Tensor) and norm.item() == pytest.approx(5.0)
    assert a.grad.tolist() == [3.0, 0.0]  # None: measured, not clipped
    norm = clip_gradients([a, b, untouched], max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
    assert b.grad[0, 1].item() == pytest.approx(0.8, rel=1e-5)
    assert clip_gradients([untouched], max_norm=1.0).item() == 0.0


def test_optimizer_state_round_trip_continues_identically() -> None:
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1, warmup_steps=2)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, i: int) -> None:
        set_lr(optimizer, lr_at(i, cfg, 10))
        optimizer.zero_grad()
        loss_of(model).backward()
        clip_gradients(model.parameters(), 1.0)
        optimizer.step()

    model = Tiny()
    optimizer = optimizer_from_config(model, cfg)
    for i in range(3):
        step(model, optimizer, i)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, buffer)
    step(model, optimizer, 3)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = Tiny()
    fresh.load_state_dict(saved["model"])
    fresh_optimizer = optimizer_from_config(fresh, cfg)
    fresh_optimizer.load_state_dict(saved["optim"])
    step(fresh, fresh_optimizer, 3)
    for (name, p), q in zip(model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q), name

    # The loaded state matters: without it the same step lands elsewhere.
    stateless = Tiny()
    stateless.load_state_dict(saved["model"])
    step(stateless, optimizer_from_config(stateless, cfg), 3)
    assert not torch.equal(stateless.proj.weight, model.proj.weight)


def test_real_model_decays_only_its_non_embedding_matrices() -> None:
    from fsmrun.nn.model import build_model
    from fsmrun.schemas.config import ModelConfig

    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, factorized_rank=4)
    model = build_model(cfg, vocab_size=5, num_states=3, generator=torch.Generator().manual_seed(0))
    names = param_group_names(model)
    params = dict(model.named_parameters())
    assert names["decay"] and names["no_decay"]
    assert all(params[n].ndim == 2 and "embed" not in n for n in names["decay"])
    assert any("embed" in n for n in names["no_decay"])
    assert sorted(names["decay"] + names["no_decay"]) == sorted(params)
