"""Multi-task loss: masked next-token, class and state cross-entropies, the legal-next-set BCE
(task char_prediction) and the L1 penalty on U.

Every loss is a token-level mean over its mask (masked sum / max(count, 1)), computed in
float32, with no host-device sync, and masked positions cannot influence values or gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from fsmrun.schemas.config import TrainConfig

if TYPE_CHECKING:
    from fsmrun.data.encoding import Batch
    from fsmrun.nn.model import ModelOutput

# The order history lines list the losses in (and of the running sums a checkpoint holds).
LOSS_KEYS = ("total", "next", "class", "state", "l1_u", "legal")

# Token columns the legal-next head is trained and scored on: EOS and the symbols (PAD and BOS
# are never legal, so they carry no signal).
LEGAL_FIRST_TOKEN = 2  # EOS (dataset.EOS; dataset imports this module's callers, not vice versa)


def next_token_mask(batch: Batch, next_token_on_all: bool) -> Tensor:
    """bool [B, T]: positions that carry the next-token loss.

    Real positions of accepted strings (labels_b == 1), or of every string when
    `next_token_on_all` (DESIGN.md, "Data semantics").
    """
    if next_token_on_all:
        return batch.loss_mask_bxt
    return batch.loss_mask_bxt & (batch.labels_b == 1).unsqueeze(1)


def class_loss_mask(batch: Batch, class_loss_on: str) -> Tensor:
    """bool [B, T]: positions that carry the class loss: every real position (`all`), or only
    t = n, the whole string (`final`)."""
    if class_loss_on == "all":
        return batch.loss_mask_bxt
    positions_t = torch.arange(batch.loss_mask_bxt.shape[1], device=batch.lengths_b.device)
    return positions_t.unsqueeze(0) == batch.lengths_b.unsqueeze(1)


def legal_first_token(cfg: TrainConfig) -> int:
    """The first token column of the legal-next set: EOS, or the first symbol when the set
    carries no end bit (`train.legal_next_eos = false`, as in Bhattamishra et al.)."""
    return LEGAL_FIRST_TOKEN if cfg.legal_next_eos else LEGAL_FIRST_TOKEN + 1


def legal_bce(
    logits_bxtxv: Tensor,
    target_bxtxv: Tensor,
    mask_bxt: Tensor,
    first_token: int = LEGAL_FIRST_TOKEN,
) -> Tensor:
    """float32 [B, T]: BCE-with-logits summed over the columns from `first_token` on (EOS and
    the symbols, or the symbols alone), 0 off the mask.

    Masked logits are replaced by zeros first, as in `token_cross_entropy`.
    """
    logits_bxtxv = logits_bxtxv[..., first_token:].float()
    logits_bxtxv = torch.where(mask_bxt.unsqueeze(-1), logits_bxtxv, 0.0)
    target_bxtxv = target_bxtxv[..., first_token:].float()
    bce_bxtxv = F.binary_cross_entropy_with_logits(logits_bxtxv, target_bxtxv, reduction="none")
    return torch.where(mask_bxt, bce_bxtxv.sum(dim=-1), 0.0)


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

    Keys (LOSS_KEYS): next (on `next_token_mask`), class (on `class_loss_mask`), state (on
    every real position), legal (BCE of the legal-next head on every real position, summed
    over EOS and the symbols, meaned over positions; 0 without that head), l1_u (the model's
    penalty as given, 0 when None) and total = lambda_next*next + lambda_class*class +
    lambda_state*state + lambda_legal*legal + lambda_l1_u*l1_u.
    """
    real_bxt = batch.loss_mask_bxt
    next_bxt = next_token_mask(batch, cfg.next_token_on_all)
    class_bxt = class_loss_mask(batch, cfg.class_loss_on)
    next_loss = masked_mean(
        token_cross_entropy(out.logits_next, batch.target_next_bxt, next_bxt), next_bxt
    )
    class_loss = masked_mean(
        token_cross_entropy(out.logits_class, batch.target_class_bxt, class_bxt), class_bxt
    )
    state_loss = masked_mean(
        token_cross_entropy(out.logits_state, batch.target_state_bxt, real_bxt), real_bxt
    )
    zero = torch.zeros((), dtype=torch.float32, device=next_loss.device)
    l1_u = zero if l1_u is None else l1_u.float()
    total = (
        cfg.lambda_next * next_loss
        + cfg.lambda_class * class_loss
        + cfg.lambda_state * state_loss
        + cfg.lambda_l1_u * l1_u
    )
    legal_loss = zero
    if out.legal_next_logits_bxtxv is not None:  # only the char_prediction head has it
        legal_loss = masked_mean(
            legal_bce(
                out.legal_next_logits_bxtxv,
                batch.target_legal_bxtxv,
                real_bxt,
                legal_first_token(cfg),
            ),
            real_bxt,
        )
        total = total + cfg.lambda_legal * legal_loss
    return {
        "next": next_loss,
        "class": class_loss,
        "state": state_loss,
        "l1_u": l1_u,
        "legal": legal_loss,
        "total": total,
    }
