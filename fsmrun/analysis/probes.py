"""Linear probes from each layer's hidden states to the DFA state, beside a control task.

The control task follows Hewitt & Liang (EMNLP 2019): there, each word *type* gets a random
label drawn from the empirical label distribution, so a probe can only solve it by
memorising types, and selectivity = task accuracy - control accuracy says how much of the
probe's accuracy the representation (not the probe) explains. Our analogue of a word type is
the transition that reached a prefix: (previous DFA state, input symbol), plus one type for
the empty prefix. The true label, the DFA state, is itself a function of that type (it is
delta(q, a)); the control is a *random* function of the same types with the same label
distribution, so both tasks have exactly the same structure. A layer that linearly separates
the states, not just the transitions, scores high on the task and lower on the control.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CONTROL_DESCRIPTION",
    "ProbeScores",
    "control_labels",
    "fit_probe",
    "majority_accuracy",
    "probe_layer",
]

CONTROL_DESCRIPTION = (
    "Hewitt & Liang control task: each transition type (previous DFA state, input symbol; "
    "one type for the empty prefix) mapped to a random DFA state drawn from the training "
    "state distribution"
)
PROBE_STEPS = 200  # full-batch steps: the loss has flattened well before on every run tried
PROBE_LR = 0.05
WEIGHT_DECAY = 1e-4  # a little L2 keeps separable classes from driving weights to infinity


def control_labels(states_train: Tensor, num_types: int, generator: torch.Generator) -> Tensor:
    """The control label of every type: [num_types] long, each drawn (with `generator`) from
    the empirical distribution of `states_train` (every type gets one, seen in training or not).
    """
    counts = torch.bincount(states_train).double()
    return torch.multinomial(
        counts / counts.sum(), num_types, replacement=True, generator=generator
    )


def fit_probe(x_pxc: Tensor, y_p: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """Multinomial logistic regression on standardised features by full-batch Adam.

    Returns the weights [C + 1, K] (the last row is the bias). Adam is written out here:
    torch.optim's constructor imports torch._dynamo, seconds of start-up this command need
    not pay (training pays it anyway).
    """
    x = torch.cat([x_pxc, torch.ones(len(x_pxc), 1)], dim=1)  # (P, C + 1)
    w = torch.randn(x.shape[1], num_classes, generator=generator) * 1e-3
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    beta1, beta2 = 0.9, 0.999
    rows = torch.arange(len(y_p))
    for step in range(1, PROBE_STEPS + 1):
        # The cross-entropy gradient in closed form (softmax minus one-hot): two matmuls a
        # step, no autograd graph.
        residual_pxk = torch.softmax(x @ w, dim=1)
        residual_pxk[rows, y_p] -= 1.0
        grad = x.T @ residual_pxk / len(y_p)
        grad[:-1] += 2 * WEIGHT_DECAY * w[:-1]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        w -= PROBE_LR * (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + 1e-8)
    return w


def accuracy(w: Tensor, x_pxc: Tensor, y_p: Tensor) -> float:
    """Fraction of rows whose most likely class under probe `w` is `y_p`."""
    x = torch.cat([x_pxc, torch.ones(len(x_pxc), 1)], dim=1)
    return float(((x @ w).argmax(-1) == y_p).double().mean()) if len(y_p) else float("nan")


def majority_accuracy(states_train: Tensor, states_eval: Tensor) -> float:
    """Accuracy on `states_eval` of always answering the most common training state."""
    most = torch.bincount(states_train).argmax()
    return float((states_eval == most).double().mean())


@dataclass(frozen=True)
class ProbeScores:
    test_acc: float
    ood_acc: float | None
    control_test_acc: float
    control_ood_acc: float | None


def probe_layer(
    train: tuple[Tensor, Tensor, Tensor],
    evals: dict[str, tuple[Tensor, Tensor, Tensor]],
    control_of_type: Tensor,
    num_states: int,
    generator: torch.Generator,
) -> ProbeScores:
    """Fit the task probe and the control probe on `train` (hidden [P, C], state [P], type
    [P]) and score both on each split of `evals` ("test", optionally "test_ood")."""
    hidden, states, types = train
    mean, std = hidden.mean(0), hidden.std(0).clamp_min(1e-6)

    def norm(x: Tensor) -> Tensor:
        return (x - mean) / std

    task = fit_probe(norm(hidden), states, num_states, generator)
    control = fit_probe(norm(hidden), control_of_type[types], num_states, generator)
    scores: dict[str, float | None] = {}
    for name in ("test", "test_ood"):
        if name not in evals:
            scores[name], scores["control_" + name] = None, None
            continue
        h, s, t = evals[name]
        scores[name] = accuracy(task, norm(h), s)
        scores["control_" + name] = accuracy(control, norm(h), control_of_type[t])
    return ProbeScores(
        test_acc=scores["test"],  # type: ignore[arg-type]
        ood_acc=scores["test_ood"],
        control_test_acc=scores["control_test"],  # type: ignore[arg-type]
        control_ood_acc=scores["control_test_ood"],
    )
