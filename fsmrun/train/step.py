"""One optimisation step of fsmrun's training loop, with device-side running statistics."""

from __future__ import annotations

import torch

from fsmrun.data.encoding import Batch
from fsmrun.nn.losses import LOSS_KEYS, compute_losses
from fsmrun.schemas.config import TrainConfig
from fsmrun.train.optim import clip_gradients, lr_at, set_lr

STAT_KEYS = (*LOSS_KEYS, "grad_norm")


class StepRunner:
    """One optimisation step: forward, losses, backward, clip, learning rate, update.

    Keeps device-side running sums of the loss components and gradient norm so that the
    host only syncs at logging time. `step` does no host-device synchronisation itself.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        cfg: TrainConfig,
        total_steps: int,
        *,
        amp_dtype: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.cfg = cfg
        self.total_steps = total_steps
        self.amp_dtype = amp_dtype
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.device_type = next(model.parameters()).device.type
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.use_l1 = cfg.lambda_l1_u > 0
        self.sums = torch.zeros(len(STAT_KEYS), device=next(model.parameters()).device)
        self.count = 0
        self.last_lr = 0.0

    def step(self, batch: Batch, step: int) -> None:
        """Take optimizer step number `step` (0-based) on `batch`."""
        lr = lr_at(step, self.cfg, self.total_steps)
        set_lr(self.optimizer, lr)
        self.last_lr = lr
        with torch.autocast(
            self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            out = self.model(batch.input_ids_bxt)
            losses = compute_losses(
                out, batch, self.cfg, self.model.l1_u() if self.use_l1 else None
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses["total"]).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = clip_gradients(self.params, self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            losses["total"].backward()
            grad_norm = clip_gradients(self.params, self.cfg.grad_clip)
            self.optimizer.step()
        stats = torch.stack([*(losses[k].detach().float() for k in LOSS_KEYS), grad_norm.float()])
        self.sums += stats
        self.count += 1

    def drain(self) -> dict[str, float] | None:
        """Mean of each statistic since the last drain (one host sync), then reset."""
        if self.count == 0:
            return None
        means = (self.sums / self.count).tolist()
        self.sums.zero_()
        self.count = 0
        return dict(zip(STAT_KEYS, means, strict=True))

    def running_state(self) -> dict[str, torch.Tensor]:
        return {"sums": self.sums.detach().clone(), "count": torch.tensor(self.count)}

    def load_running_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            sums = state["sums"].to(self.sums.device)
            if len(sums) == len(STAT_KEYS) - 1:
                # Saved before the legal loss existed: its sum was 0, before grad_norm.
                sums = torch.cat([sums[:-1], sums.new_zeros(1), sums[-1:]])
            self.sums.copy_(sums)
            self.count = int(state["count"])
