"""The step runner: its running sums are the step's losses, drained as means, kept on resume."""

from __future__ import annotations

import copy

import pytest
import torch

from fsmrun.base.seeding import torch_generator
from fsmrun.data.batching import iter_batches
from fsmrun.data.prepare import build_data
from fsmrun.nn.losses import LOSS_KEYS, compute_losses
from fsmrun.nn.model import build_model
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.train.optim import lr_at, optimizer_from_config
from fsmrun.train.step import STAT_KEYS, StepRunner


@pytest.fixture(scope="module")
def setup():
    exp = ExperimentConfig.model_validate(
        {
            "name": "step",
            "seed": 3,
            "data": {"regex": "(a|b)*ab", "alphabet": "ab", "min_len": 0, "max_len": 6,
                     "ood_min_len": 7, "ood_max_len": 8, "n_train": 16, "n_val": 4,
                     "n_test": 4, "n_test_ood": 0},
            "model": {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ff": 16, "dropout": 0.0},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "warmup_steps": 0},
        }
    )  # fmt: skip
    data = build_data(exp, torch.device("cpu"), None)
    batches = list(iter_batches(data.splits["train"], 8, exp.seed, 0))
    model = build_model(exp.model, data.vocab.size, data.dfa.num_states,
                        generator=torch_generator(exp.seed, "init"))  # fmt: skip
    return exp, batches, model


def test_stat_keys_are_the_losses_then_the_gradient_norm():
    assert STAT_KEYS == ("total", "next", "class", "state", "l1_u", "legal", "grad_norm")
    assert STAT_KEYS[:-1] == LOSS_KEYS


def test_running_sums_saved_before_the_legal_loss_load_with_it_as_zero(setup):
    exp, _, model = setup
    runner = StepRunner(model, torch.optim.AdamW(model.parameters()), exp.train, 10)
    old = torch.tensor([6.0, 1.0, 2.0, 3.0, 0.5, 4.0])  # total next class state l1_u grad_norm
    runner.load_running_state({"sums": old, "count": torch.tensor(2)})
    assert runner.sums.tolist() == [6.0, 1.0, 2.0, 3.0, 0.5, 0.0, 4.0]
    assert runner.count == 2


def test_drain_gives_the_mean_of_the_losses_of_the_steps_taken(setup):
    exp, batches, model = setup
    model = copy.deepcopy(model)
    runner = StepRunner(model, optimizer_from_config(model, exp.train), exp.train, total_steps=2)
    expected = []
    for step, batch in enumerate(batches[:2]):
        with torch.no_grad():
            expected.append(compute_losses(model(batch.input_ids_bxt), batch, exp.train))
        runner.step(batch, step)
    assert runner.count == 2
    means = runner.drain()
    for key in LOSS_KEYS:
        mean = (expected[0][key].float() + expected[1][key].float()) / 2
        assert means[key] == pytest.approx(float(mean), rel=1e-6), key
    assert means["l1_u"] == 0.0 and means["grad_norm"] > 0.0
    assert runner.drain() is None and runner.count == 0
    assert runner.last_lr == lr_at(1, exp.train, 2)  # the rate of the last step taken


def test_running_state_carries_sums_and_count_into_a_new_runner(setup):
    exp, batches, model = setup
    model = copy.deepcopy(model)
    first = StepRunner(model, optimizer_from_config(model, exp.train), exp.train, total_steps=2)
    first.step(batches[0], 0)
    state = first.running_state()
    second = StepRunner(model, optimizer_from_config(model, exp.train), exp.train, total_steps=2)
    second.load_running_state(state)
    assert second.count == 1
    assert torch.equal(second.sums, first.sums)
    assert second.drain() == first.drain()
