"""Evaluation metrics accumulated on the device batch by batch, finalised to `SplitMetrics`.

`MetricAccumulator.update` only adds small tensors (no host sync); `compute` reads them back
once. Every metric is also given per string-length bin (`BinMetrics`), and every class
accuracy beside the majority-class baseline of the same positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fsmrun.core.losses import next_token_mask, token_cross_entropy
from fsmrun.schemas.config import DataConfig, TrainConfig
from fsmrun.schemas.records import BinMetrics, SplitMetrics

if TYPE_CHECKING:
    from fsmrun.core.dataset import Batch
    from fsmrun.core.model import ModelOutput

# Per-string counts, one column each; summed per length bin on the device.
_COUNTS = (
    "strings",  # strings
    "string_correct",  # class prediction at t = n equals the label
    "string_pos",  # accepted strings
    "positions",  # real positions t = 0..n (class and state metrics)
    "class_correct",
    "class_pos",  # real positions whose prefix is accepted
    "next_positions",  # positions carrying the next-token loss (see losses.next_token_mask)
    "token_correct",
    "live_positions",  # real positions whose DFA state is live (some legal next token)
    "next_valid",  # ... whose predicted next token is legal there
    "state_correct",
)
_COL = {name: i for i, name in enumerate(_COUNTS)}
# Float sums over the whole split: next-token NLL, class CE, state CE (for nll and loss).
_SUMS = ("nll", "class_ce", "state_ce")

_BINS_PER_RANGE = 4
_MIN_BIN_WIDTH = 10


def default_length_bins(data_cfg: DataConfig) -> list[int]:
    """Bin edges covering the training lengths [min_len, max_len] and, when there is an OOD
    split, [ood_min_len, ood_max_len].

    Each range is cut into at most 4 bins of equal width w = max(10, ceil(span / 4)) (the last
    one may be narrower), so bins keep enough strings for a stable rate. Edges e0 < e1 < ...
    mean bins [e0, e1 - 1], [e1, e2 - 1], ...; a gap between the two ranges becomes a bin of
    its own that no split fills (and `compute` leaves out empty bins). Defaults
    (1-20, OOD 21-40) give [1, 11, 21, 31, 41].
    """

    def cut(lo: int, hi: int) -> list[int]:
        width = max(_MIN_BIN_WIDTH, math.ceil((hi - lo + 1) / _BINS_PER_RANGE))
        return [*range(lo, hi + 1, width), hi + 1]

    edges = cut(data_cfg.min_len, data_cfg.max_len)
    if data_cfg.n_test_ood > 0:
        ood = cut(data_cfg.ood_min_len, data_cfg.ood_max_len)
        edges += ood[1:] if ood[0] == edges[-1] else ood
    return edges


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _baseline(pos: float, total: float) -> float | None:
    return max(pos, total - pos) / total if total else None


class MetricAccumulator:
    """Sums counts per length bin over batches, then `compute()` -> SplitMetrics.

    Definitions (positions are t = 0..n of each string, n its length):
    - nll, token_acc: next-token NLL / argmax accuracy on the next-token positions (real
      positions of accepted strings, or of all strings with cfg.next_token_on_all), as trained.
    - next_valid: over real positions of every string whose DFA state is live (has a legal
      next token in `legal_next_sxv`), the fraction whose argmax next token is legal there.
    - class_acc / class_baseline: prefix membership over every real position; baseline is the
      majority-class rate of the prefix labels on those positions.
    - string_acc / string_baseline: the class prediction at t = n against the string label;
      baseline is the majority-label rate.
    - state_acc: argmax DFA state over every real position.
    - loss: lambda_next*nll + lambda_class*class CE + lambda_state*state CE, each a token-level
      mean over the whole split (no L1 term).
    Bins: edges [e0, e1, ..., ek] give bins [e(i), e(i+1) - 1]; strings outside every bin count
    in the split totals only; empty bins are left out of `bins`. Rates with an empty
    denominator are None.
    """

    def __init__(
        self,
        legal_next_sxv: Tensor,
        cfg: TrainConfig,
        length_bins: Sequence[int] | None,
        device: torch.device | str,
    ) -> None:
        edges = list(length_bins or [])
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"length_bins must be strictly increasing, got {edges}")
        self.cfg = cfg
        self.edges = edges
        self.num_bins = max(0, len(edges) - 1)
        self.device = torch.device(device)
        self.legal_next_sxv = legal_next_sxv.to(self.device, torch.bool)
        self.live_s = self.legal_next_sxv.any(dim=1)
        self._edges_e = torch.tensor(edges, dtype=torch.long, device=self.device)
        # Row num_bins collects the strings outside every bin.
        self._counts_rxk = torch.zeros(
            self.num_bins + 1, len(_COUNTS), dtype=torch.long, device=self.device
        )
        self._sums_k = torch.zeros(len(_SUMS), dtype=torch.float64, device=self.device)

    def _bin_index(self, lengths_b: Tensor) -> Tensor:
        """long [B]: the bin of each string, num_bins when it lies outside every bin."""
        if self.num_bins == 0:
            return torch.zeros_like(lengths_b)
        # bucketize(right=True) - 1 = i such that edges[i] <= n < edges[i + 1].
        bin_b = torch.bucketize(lengths_b, self._edges_e, right=True) - 1
        outside_b = (bin_b < 0) | (bin_b >= self.num_bins)
        return torch.where(outside_b, self.num_bins, bin_b)

    @torch.no_grad()
    def update(self, out: ModelOutput, batch: Batch) -> None:
        """Add one batch (no host sync)."""
        real_bxt = batch.loss_mask_bxt
        next_bxt = next_token_mask(batch, self.cfg.next_token_on_all)
        pred_next_bxt = out.logits_next.argmax(dim=-1)
        pred_class_bxt = out.logits_class.argmax(dim=-1)
        pred_state_bxt = out.logits_state.argmax(dim=-1)
        # Class prediction after the whole string (t = n): whole-string membership.
        pred_string_b = pred_class_bxt.gather(1, batch.lengths_b.unsqueeze(1)).squeeze(1)
        state_bxt = batch.target_state_bxt
        live_bxt = real_bxt & self.live_s[state_bxt]
        legal_bxt = self.legal_next_sxv[state_bxt, pred_next_bxt]

        def per_string(flags_bxt: Tensor, mask_bxt: Tensor) -> Tensor:
            return (flags_bxt & mask_bxt).sum(dim=1)

        columns = {
            "strings": torch.ones_like(batch.lengths_b),
            "string_correct": (pred_string_b == batch.labels_b).long(),
            "string_pos": (batch.labels_b == 1).long(),
            "positions": real_bxt.sum(dim=1),
            "class_correct": per_string(pred_class_bxt == batch.target_class_bxt, real_bxt),
            "class_pos": per_string(batch.target_class_bxt == 1, real_bxt),
            "next_positions": next_bxt.sum(dim=1),
            "token_correct": per_string(pred_next_bxt == batch.target_next_bxt, next_bxt),
            "live_positions": live_bxt.sum(dim=1),
            "next_valid": per_string(legal_bxt, live_bxt),
            "state_correct": per_string(pred_state_bxt == state_bxt, real_bxt),
        }
        counts_bxk = torch.stack([columns[name] for name in _COUNTS], dim=1)
        self._counts_rxk.index_add_(0, self._bin_index(batch.lengths_b), counts_bxk)

        sums = [
            token_cross_entropy(out.logits_next, batch.target_next_bxt, next_bxt).sum(),
            token_cross_entropy(out.logits_class, batch.target_class_bxt, real_bxt).sum(),
            token_cross_entropy(out.logits_state, state_bxt, real_bxt).sum(),
        ]
        self._sums_k += torch.stack(sums).double()

    def compute(self) -> SplitMetrics:
        """The metrics of everything added so far (one host sync)."""
        host = torch.cat([self._counts_rxk.flatten().double(), self._sums_k]).tolist()
        width = len(_COUNTS)
        rows = [host[r * width : (r + 1) * width] for r in range(self.num_bins + 1)]
        nll_sum, class_ce_sum, state_ce_sum = host[len(rows) * width :]
        total = [sum(column) for column in zip(*rows, strict=True)]

        def rates(c: list[float]) -> dict[str, float | None]:
            return {
                "string_acc": _ratio(c[_COL["string_correct"]], c[_COL["strings"]]),
                "string_baseline": _baseline(c[_COL["string_pos"]], c[_COL["strings"]]),
                "class_acc": _ratio(c[_COL["class_correct"]], c[_COL["positions"]]),
                "class_baseline": _baseline(c[_COL["class_pos"]], c[_COL["positions"]]),
                "token_acc": _ratio(c[_COL["token_correct"]], c[_COL["next_positions"]]),
                "next_valid": _ratio(c[_COL["next_valid"]], c[_COL["live_positions"]]),
                "state_acc": _ratio(c[_COL["state_correct"]], c[_COL["positions"]]),
            }

        bins = [
            BinMetrics(lo=lo, hi=hi - 1, n_strings=int(c[_COL["strings"]]), **rates(c))
            for lo, hi, c in zip(self.edges, self.edges[1:], rows, strict=False)
            if c[_COL["strings"]] > 0
        ]
        # Token-level means over the split; an empty mask contributes 0, as in training.
        nll = _ratio(nll_sum, total[_COL["next_positions"]])
        class_ce = class_ce_sum / max(1.0, total[_COL["positions"]])
        state_ce = state_ce_sum / max(1.0, total[_COL["positions"]])
        loss = (
            self.cfg.lambda_next * (nll or 0.0)
            + self.cfg.lambda_class * class_ce
            + self.cfg.lambda_state * state_ce
        )
        return SplitMetrics(
            n_strings=int(total[_COL["strings"]]),
            loss=loss,
            nll=nll,
            **rates(total),
            bins=bins,
        )
