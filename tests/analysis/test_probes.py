"""Linear probes: a separable labelling is learnt exactly, chance stays chance, and the control
labels are a seeded random function of the transition type."""

from __future__ import annotations

import torch

from fsmrun.analysis.probes import (
    accuracy,
    control_labels,
    fit_probe,
    majority_accuracy,
    probe_layer,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_linearly_separable_state_is_probed_exactly():
    # Three states at three corners of the plane, with noise well inside the margins.
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    y = torch.arange(3).repeat(200)
    x = centres[y] + 0.3 * torch.randn(len(y), 2, generator=_gen(1))
    w = fit_probe(x, y, 3, _gen())
    assert accuracy(w, x, y) == 1.0


def test_control_labels_are_seeded_and_drawn_from_the_training_states():
    states = torch.tensor([0, 0, 0, 2])  # state 1 never occurs: never a control label
    first = control_labels(states, 50, _gen(3))
    assert torch.equal(first, control_labels(states, 50, _gen(3)))
    assert set(first.tolist()) <= {0, 2}
    assert len(first) == 50


def test_majority_accuracy_answers_the_most_common_training_state():
    assert majority_accuracy(torch.tensor([1, 1, 0]), torch.tensor([1, 0, 0, 0])) == 0.25


def test_selectivity_is_high_where_the_layer_holds_the_state_not_the_transition():
    # Hidden state = one-hot of the DFA state only: the state probe is exact; the control
    # (a random function of the transition type) cannot be read from it better than chance
    # within each state.
    gen = _gen(2)
    types = torch.randint(0, 8, (2000,), generator=gen)
    states = types % 2  # two states; four transition types lead to each
    hidden = torch.nn.functional.one_hot(states, 2).float()
    control = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0])  # differs within each state's types
    data = (hidden, states, types)
    scores = probe_layer(data, {"test": data}, control, 2, _gen())
    assert scores.test_acc == 1.0
    assert scores.control_test_acc < 0.6
    assert scores.ood_acc is None
