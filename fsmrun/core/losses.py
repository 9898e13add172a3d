"""Multi-task loss: masked next-token, class and state cross-entropies plus the L1 penalty on U.

Every cross-entropy is a token-level mean over its mask (masked sum / max(count, 1)), computed
in float32, with no host-device sync, and masked positions cannot influence values or gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from fsmrun.schemas.config import TrainConfig

if TYPE_CHECKING:
    from fsmrun.core.dataset import Batch
    from fsmrun.core.model import ModelOutput

# The order history lines list the losses in (and of the running sums a checkpoint holds).
LOSS_KEYS = ("total", "next", "class", "state", "l1_u")


def next_token_mask(batch: Batch, next_token_on_all: bool) -> Tensor:
    """bool [B, T]: positions that carry the next-token loss.

    Real positions of accepted strings (labels_b == 1), or of every string when
    `next_token_on_all` (DESIGN.md, "Data semantics").
    """
    if next_token_on_all:
        return batch.loss_mask_bxt
    return batch.loss_mask_bxt & (batch.labels_b == 1).unsqueeze(1)


def token_cross_entropy(logits_bxtxc: Tensor, target_bxt: Tensor, mask_bxt: Tensor) -> Tensor:
    """float32 [B, T]: per-position cross-entropy, exactly 0 where `mask_bxt` is False.

    Masked logits are replaced by zeros *before* the softmax (torch.where, not a product with
    the mask), so inf/NaN there can reach neither the value nor the gradient.
    """
    B, T, C = logits_bxtxc.shape
    logits_bxtxc = torch.where(mask_bxt.unsqueeze(-1), logits_bxtxc.float(), 0.0)
    # Targets at masked positions are PAD/0, a valid class index, and their loss is zeroed.
    ce_bxt = F.cross_entropy(
        logits_bxtxc.reshape(B * T, C), target_bxt.reshape(B * T), reduction="none"
    ).view(B, T)
    return torch.where(mask_bxt, ce_bxt, 0.0)


def masked_mean(values_bxt: Tensor, mask_bxt: Tensor) -> Tensor:
    """Mean of `values_bxt` over `mask_bxt` (values must already be 0 off the mask); 0 if empty."""
    return values_bxt.sum() / mask_bxt.sum().clamp(min=1)


def compute_losses(
    out: ModelOutput, batch: Batch, cfg: TrainConfig, l1_u: Tensor | None = None
) -> dict[str, Tensor]:
    """Loss components and their weighted total, as float32 scalar tensors.

    Keys (LOSS_KEYS): next (on `next_token_mask`), class and state (on every real position),
    l1_u (the model's penalty as given, 0 when None) and
    total = lambda_next*next + lambda_class*class + lambda_state*state + lambda_l1_u*l1_u.
    """
    real_bxt = batch.loss_mask_bxt
    next_bxt = next_token_mask(batch, cfg.next_token_on_all)
    next_loss = masked_mean(
        token_cross_entropy(out.logits_next, batch.target_next_bxt, next_bxt), next_bxt
    )
    class_loss = masked_mean(
        token_cross_entropy(out.logits_class, batch.target_class_bxt, real_bxt), real_bxt
    )
    state_loss = masked_mean(
        token_cross_entropy(out.logits_state, batch.target_state_bxt, real_bxt), real_bxt
    )
    if l1_u is None:
        l1_u = torch.zeros((), dtype=torch.float32, device=next_loss.device)
    else:
        l1_u = l1_u.float()
    total = (
        cfg.lambda_next * next_loss
        + cfg.lambda_class * class_loss
        + cfg.lambda_state * state_loss
        + cfg.lambda_l1_u * l1_u
    )
    return {
        "next": next_loss,
        "class": class_loss,
        "state": state_loss,
        "l1_u": l1_u,
        "total": total,
    }
