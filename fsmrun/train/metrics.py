"""Evaluation metrics accumulated on the device batch by batch, finalised to `SplitMetrics`.

`MetricAccumulator.update` only adds small tensors (no host sync); `compute` reads them back
once. Every metric is also given per string-length bin (`BinMetrics`), every accuracy beside
its baseline (majority class, best constant predictor) and class accuracies beside balanced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fsmrun.nn.losses import (
    LEGAL_FIRST_TOKEN,
    class_loss_mask,
    legal_bce,
    legal_first_token,
    next_token_mask,
    token_cross_entropy,
)
from fsmrun.schemas.config import DataConfig, TrainConfig
from fsmrun.schemas.records import BinMetrics, SplitMetrics

if TYPE_CHECKING:
    from fsmrun.data.encoding import Batch
    from fsmrun.nn.model import ModelOutput

# Float sums over the whole split: next-token NLL, class CE, state CE, legal BCE (for loss).
_SUMS = ("nll", "class_ce", "state_ce", "legal_bce")

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


def _majority(counts: list[float]) -> float | None:
    """Share of the most frequent class (the best constant prediction); None when empty."""
    total = sum(counts)
    return max(counts) / total if total else None


def _balanced(correct: list[float], counts: list[float]) -> float | None:
    """Mean recall over the classes present; None when no class is."""
    recalls = [c / n for c, n in zip(correct, counts, strict=True) if n]
    return sum(recalls) / len(recalls) if recalls else None


class _Columns:
    """Named slices of the per-string count row: scalar columns and per-class groups."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.slices: dict[str, slice] = {}
        start = 0
        for name, width in groups.items():
            self.slices[name] = slice(start, start + width)
            start += width
        self.width = start

    def get(self, row: list[float], name: str) -> list[float]:
        return row[self.slices[name]]

    def one(self, row: list[float], name: str) -> float:
        return row[self.slices[name].start]


class MetricAccumulator:
    """Sums counts per length bin over batches, then `compute()` -> SplitMetrics.

    Definitions (positions are t = 0..n of each string, n its length; the class of a prefix is
    its membership, or its state's output with task final_output):
    - nll, token_acc: next-token NLL / argmax accuracy on the next-token positions (real
      positions of accepted strings, or of all strings with cfg.next_token_on_all), as trained.
    - next_valid: over real positions of every string whose DFA state is live (has a legal
      next token in `legal_next_sxv`), the fraction whose argmax next token is legal there;
      next_valid_baseline: the same for the best constant token (the one legal most often).
    - class_acc / class_baseline / class_balanced_acc: the class head over every real position;
      baseline is the majority-class rate of those positions, balanced accuracy the mean
      recall over the classes present.
    - string_acc / string_baseline / string_balanced_acc: the same at t = n only (the string's
      label: membership or final output).
    - state_acc: argmax DFA state over every real position.
    - char_acc / char_pos_acc (only with a legal-next head): strings whose predicted legal sets
      (logit > 0 over EOS and the symbols) equal the targets at every position / positions
      whose set is exact; char_baseline / char_pos_baseline: the best constant set predictor,
      one fixed set everywhere, chosen to maximise that rate on the same strings (per bin: on
      the bin's strings).
    - length_mean_acc: string_acc (char_acc with the legal-next head) per string length,
      averaged over the lengths present (Deletang et al.'s score).
    - loss: lambda_next*nll + lambda_class*class CE (on its loss positions) + lambda_state*state
      CE (+ lambda_legal*legal BCE with the head), each a token-level mean over the split.
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
        *,
        num_classes: int = 2,
        max_length: int = 0,
    ) -> None:
        """`max_length`: the longest string to come (sizes the per-length counts of
        `length_mean_acc`; longer strings are left out of that score)."""
        edges = list(length_bins or [])
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"length_bins must be strictly increasing, got {edges}")
        self.cfg = cfg
        self.edges = edges
        self.num_bins = max(0, len(edges) - 1)
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.legal_next_sxv = legal_next_sxv.to(self.device, torch.bool)
        self.live_s = self.legal_next_sxv.any(dim=1)
        # Each distinct legal set (over EOS and the symbols) gets an id, for the constant-set
        # baselines: the target set of a position is the set of its state.
        self.legal_first = legal_first_token(cfg)  # EOS, or the first symbol without it
        sets_mxv, self.set_id_s = torch.unique(
            self.legal_next_sxv[:, self.legal_first :], dim=0, return_inverse=True
        )
        self.num_sets = len(sets_mxv)
        vocab_size = self.legal_next_sxv.shape[1]
        self.cols = _Columns(
            {
                "strings": 1,
                "string_correct": 1,
                "positions": 1,  # real positions t = 0..n (class and state metrics)
                "class_correct": 1,
                "class_loss_positions": 1,  # positions carrying the class loss
                "next_positions": 1,  # positions carrying the next-token loss
                "token_correct": 1,
                "live_positions": 1,  # real positions whose DFA state is live
                "next_valid": 1,  # ... whose predicted next token is legal there
                "state_correct": 1,
                "char_correct": 1,  # strings whose every legal set is exact
                "char_pos_correct": 1,
                "string_of_class": num_classes,  # strings whose label is k
                "string_correct_of_class": num_classes,
                "positions_of_class": num_classes,
                "class_correct_of_class": num_classes,
                "legal_token": vocab_size,  # live positions where token v is legal
                "positions_of_set": self.num_sets,
                "strings_of_set": self.num_sets,  # strings with set m at every position
            }
        )
        self.has_legal_head = False
        self._edges_e = torch.tensor(edges, dtype=torch.long, device=self.device)
        # Row num_bins collects the strings outside every bin.
        self._counts_rxk = torch.zeros(
            self.num_bins + 1, self.cols.width, dtype=torch.long, device=self.device
        )
        self._sums_k = torch.zeros(len(_SUMS), dtype=torch.float64, device=self.device)
        # Per string length 0..max_length: strings, and strings wholly right.
        self._by_length_2xl = torch.zeros(2, max_length + 1, dtype=torch.long, device=self.device)

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
        class_loss_bxt = class_loss_mask(batch, self.cfg.class_loss_on)
        pred_next_bxt = out.logits_next.argmax(dim=-1)
        pred_class_bxt = out.logits_class.argmax(dim=-1)
        pred_state_bxt = out.logits_state.argmax(dim=-1)
        # Class prediction and target after the whole string (t = n): the string's label.
        last_bx1 = batch.lengths_b.unsqueeze(1)
        pred_string_b = pred_class_bxt.gather(1, last_bx1).squeeze(1)
        label_b = batch.target_class_bxt.gather(1, last_bx1).squeeze(1)
        state_bxt = batch.target_state_bxt
        live_bxt = real_bxt & self.live_s[state_bxt]
        legal_bxt = self.legal_next_sxv[state_bxt, pred_next_bxt]
        k = self.num_classes

        def per_string(flags_bxt: Tensor, mask_bxt: Tensor) -> Tensor:
            return (flags_bxt & mask_bxt).sum(dim=1)

        def per_class(flags_bxt: Tensor, classes_bxt: Tensor, num: int) -> Tensor:
            """long [B, num]: per string, the flagged positions of each class."""
            one_hot_bxtxk = torch.nn.functional.one_hot(classes_bxt, num) * flags_bxt.unsqueeze(-1)
            return one_hot_bxtxk.sum(dim=1)

        string_ok_b = pred_string_b == label_b
        class_ok_bxt = pred_class_bxt == batch.target_class_bxt
        set_bxt = self.set_id_s[state_bxt]
        set_lo_b = torch.where(real_bxt, set_bxt, self.num_sets).amin(dim=1)
        set_hi_b = torch.where(real_bxt, set_bxt, -1).amax(dim=1)
        single_set_b = set_lo_b == set_hi_b
        columns = {
            "strings": torch.ones_like(batch.lengths_b),
            "string_correct": string_ok_b.long(),
            "positions": real_bxt.sum(dim=1),
            "class_correct": per_string(class_ok_bxt, real_bxt),
            "class_loss_positions": class_loss_bxt.sum(dim=1),
            "next_positions": next_bxt.sum(dim=1),
            "token_correct": per_string(pred_next_bxt == batch.target_next_bxt, next_bxt),
            "live_positions": live_bxt.sum(dim=1),
            "next_valid": per_string(legal_bxt, live_bxt),
            "state_correct": per_string(pred_state_bxt == state_bxt, real_bxt),
            "char_correct": torch.zeros_like(batch.lengths_b),
            "char_pos_correct": torch.zeros_like(batch.lengths_b),
            "string_of_class": torch.nn.functional.one_hot(label_b, k),
            "string_correct_of_class": torch.nn.functional.one_hot(label_b, k)
            * string_ok_b.long().unsqueeze(1),
            "positions_of_class": per_class(real_bxt, batch.target_class_bxt, k),
            "class_correct_of_class": per_class(real_bxt & class_ok_bxt, batch.target_class_bxt, k),
            "legal_token": (self.legal_next_sxv[state_bxt] & live_bxt.unsqueeze(-1)).sum(dim=1),
            "positions_of_set": per_class(real_bxt, set_bxt, self.num_sets),
            "strings_of_set": torch.nn.functional.one_hot(
                set_lo_b.clamp(max=self.num_sets - 1), self.num_sets
            )
            * single_set_b.long().unsqueeze(1),
        }
        zero = torch.zeros((), dtype=torch.float32, device=self.device)
        legal_sum = zero
        if out.legal_next_logits_bxtxv is not None:
            self.has_legal_head = True
            logits_bxtxv = out.legal_next_logits_bxtxv[..., self.legal_first :]
            target_bxtxv = batch.target_legal_bxtxv[..., self.legal_first :]
            exact_bxt = ((logits_bxtxv > 0) == target_bxtxv).all(dim=-1)
            columns["char_pos_correct"] = per_string(exact_bxt, real_bxt)
            columns["char_correct"] = (exact_bxt | ~real_bxt).all(dim=1).long()
            legal_sum = legal_bce(
                out.legal_next_logits_bxtxv, batch.target_legal_bxtxv, real_bxt, self.legal_first
            )
            legal_sum = legal_sum.sum()
        counts_bxk = torch.cat(
            [columns[name].reshape(len(batch.lengths_b), -1).long() for name in self.cols.slices],
            dim=1,
        )
        self._counts_rxk.index_add_(0, self._bin_index(batch.lengths_b), counts_bxk)
        whole_ok_b = columns["char_correct"] if self.has_legal_head else columns["string_correct"]
        lengths_b = batch.lengths_b.clamp(max=self._by_length_2xl.shape[1])
        by_length = torch.zeros(
            2, self._by_length_2xl.shape[1] + 1, dtype=torch.long, device=self.device
        )  # the extra column catches lengths beyond max_length
        by_length[0].index_add_(0, lengths_b, torch.ones_like(lengths_b))
        by_length[1].index_add_(0, lengths_b, whole_ok_b.long())
        self._by_length_2xl += by_length[:, :-1]

        sums = [
            token_cross_entropy(out.logits_next, batch.target_next_bxt, next_bxt).sum(),
            token_cross_entropy(out.logits_class, batch.target_class_bxt, class_loss_bxt).sum(),
            token_cross_entropy(out.logits_state, state_bxt, real_bxt).sum(),
            legal_sum,
        ]
        self._sums_k += torch.stack(sums).double()

    def _rates(self, row: list[float]) -> dict[str, float | None]:
        c = self.cols

        def ratio(num: str, den: str) -> float | None:
            return _ratio(c.one(row, num), c.one(row, den))

        live_legal = c.get(row, "legal_token")[LEGAL_FIRST_TOKEN:]
        rates = {
            "string_acc": ratio("string_correct", "strings"),
            "string_baseline": _majority(c.get(row, "string_of_class")),
            "string_balanced_acc": _balanced(
                c.get(row, "string_correct_of_class"), c.get(row, "string_of_class")
            ),
            "class_acc": ratio("class_correct", "positions"),
            "class_baseline": _majority(c.get(row, "positions_of_class")),
            "class_balanced_acc": _balanced(
                c.get(row, "class_correct_of_class"), c.get(row, "positions_of_class")
            ),
            "token_acc": ratio("token_correct", "next_positions"),
            "next_valid": ratio("next_valid", "live_positions"),
            "next_valid_baseline": _ratio(max(live_legal), c.one(row, "live_positions")),
            "state_acc": ratio("state_correct", "positions"),
        }
        if self.has_legal_head:
            strings = c.one(row, "strings")
            rates["char_acc"] = ratio("char_correct", "strings")
            rates["char_baseline"] = _ratio(max(c.get(row, "strings_of_set")), strings)
            rates["char_pos_acc"] = ratio("char_pos_correct", "positions")
            rates["char_pos_baseline"] = _majority(c.get(row, "positions_of_set"))
        return rates

    def compute(self) -> SplitMetrics:
        """The metrics of everything added so far (one host sync)."""
        by_length = self._by_length_2xl.flatten().double()
        host = torch.cat([self._counts_rxk.flatten().double(), self._sums_k, by_length]).tolist()
        width = self.cols.width
        rows = [host[r * width : (r + 1) * width] for r in range(self.num_bins + 1)]
        start = len(rows) * width
        nll_sum, class_ce_sum, state_ce_sum, legal_sum = host[start : start + len(_SUMS)]
        n_lengths = self._by_length_2xl.shape[1]
        strings_l = host[start + len(_SUMS) : start + len(_SUMS) + n_lengths]
        correct_l = host[start + len(_SUMS) + n_lengths :]
        per_length = [ok / n for ok, n in zip(correct_l, strings_l, strict=True) if n]
        total = [sum(column) for column in zip(*rows, strict=True)]

        def strings_of(row: list[float]) -> int:
            return int(self.cols.one(row, "strings"))

        bins = [
            BinMetrics(lo=lo, hi=hi - 1, n_strings=strings_of(row), **self._rates(row))
            for lo, hi, row in zip(self.edges, self.edges[1:], rows, strict=False)
            if strings_of(row) > 0
        ]
        # Token-level means over the split; an empty mask contributes 0, as in training.
        nll = _ratio(nll_sum, self.cols.one(total, "next_positions"))
        class_ce = class_ce_sum / max(1.0, self.cols.one(total, "class_loss_positions"))
        positions = max(1.0, self.cols.one(total, "positions"))
        loss = (
            self.cfg.lambda_next * (nll or 0.0)
            + self.cfg.lambda_class * class_ce
            + self.cfg.lambda_state * state_ce_sum / positions
        )
        if self.has_legal_head:
            loss += self.cfg.lambda_legal * legal_sum / positions
        return SplitMetrics(
            n_strings=strings_of(total),
            loss=loss,
            nll=nll,
            **self._rates(total),
            length_mean_acc=sum(per_length) / len(per_length) if per_length else None,
            bins=bins,
        )
