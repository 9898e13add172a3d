"""AdamW with decay / no-decay parameter groups, the learning rate as a pure function of the
step, and gradient clipping that returns the pre-clip norm without a host sync."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from fsmrun.schemas.config import TrainConfig

DECAY_GROUP, NO_DECAY_GROUP = "decay", "no_decay"


def _decays(name: str, param: Tensor, embedding_ids: set[int]) -> bool:
    """Weight decay on matrices only: not on 1-D params (biases, norms) nor embeddings."""
    return param.ndim >= 2 and "embed" not in name and id(param) not in embedding_ids


def param_group_names(model: nn.Module, *, decay_all: bool = False) -> dict[str, list[str]]:
    """Names of the trainable parameters in each group: {"decay": [...], "no_decay": [...]}."""
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    groups: dict[str, list[str]] = {DECAY_GROUP: [], NO_DECAY_GROUP: []}
    for name, param in model.named_parameters():  # shared (tied) parameters appear once
        if not param.requires_grad:
            continue
        decay = decay_all or _decays(name, param, embedding_ids)
        groups[DECAY_GROUP if decay else NO_DECAY_GROUP].append(name)
    return groups


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    *,
    eps: float = 1e-8,
    decay_all: bool = False,
) -> torch.optim.AdamW:
    """AdamW with two param groups, always in this order: "decay" (weight_decay) and
    "no_decay" (0.0). Matrices decay; biases, norm weights (1-D) and embeddings (names with
    "embed", or nn.Embedding weights) do not, unless `decay_all` puts everything in "decay"
    (the "no_decay" group is then empty, so state dicts keep one layout)."""
    names = param_group_names(model, decay_all=decay_all)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in names[DECAY_GROUP]], "weight_decay": weight_decay},
        {"params": [params[n] for n in names[NO_DECAY_GROUP]], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def optimizer_from_config(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """`build_optimizer` with the settings of `cfg`; the loop sets the lr with `set_lr`."""
    return build_optimizer(
        model,
        cfg.lr,
        cfg.weight_decay,
        cfg.betas,
        eps=cfg.eps,
        decay_all=cfg.decay_all_params,
    )


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of update `step` (0 = the first update) for a run of `total_steps` updates.

    Warmup: lr * (step + 1) / warmup_steps for step < warmup_steps (so step warmup_steps - 1
    reaches lr). Then, with progress p = (step - warmup_steps) / (total_steps - warmup_steps)
    clamped to [0, 1]: constant keeps lr (min_lr_ratio unused); cosine and linear go from lr
    at p = 0 to lr * min_lr_ratio at p = 1, i.e. at step = total_steps, and stay there after.
    """
    peak = cfg.lr
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    floor = peak * cfg.min_lr_ratio
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak - (peak - floor) * progress  # linear


def warmup_warning(cfg: TrainConfig, total_steps: int) -> str | None:
    """Why the schedule cannot do what it says, when the warm-up outlasts the run (the
    learning rate then never reaches train.lr); None when it fits."""
    if cfg.warmup_steps <= total_steps:
        return None
    reached = lr_at(total_steps - 1, cfg, total_steps)
    return (
        f"train.warmup_steps ({cfg.warmup_steps}) is longer than the run ({total_steps} steps): "
        f"the learning rate peaks at {reached:.3g}, never reaching train.lr ({cfg.lr:g}); "
        f"lower it, e.g. --set train.warmup_steps={max(0, total_steps // 10)}"
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every param group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(params: Iterable[Tensor], max_norm: float | None) -> Tensor:
    """Clip the global L2 gradient norm to `max_norm` (None: leave the gradients alone).

    Returns the pre-clip total norm as a 0-d tensor on the gradients' device (no host sync);
    parameters without a gradient are skipped.
    """
    params = [p for p in params if p.grad is not None]
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params])
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
