"""Metric accumulation on a hand-made batch: every metric and every bin by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fsmrun.data.encoding import Batch, Vocab, encode_split, legal_next_table
from fsmrun.lang.fsm import compile_regex
from fsmrun.nn.model import ModelOutput
from fsmrun.schemas.config import DataConfig, TrainConfig
from fsmrun.train.metrics import MetricAccumulator, default_length_bins

V, S = 5, 3  # PAD BOS EOS a b; language a*b: state 0 start, 1 accept, 2 dead
L = 3.0

# legal[q, tok]: from 0, a (-> 0) and b (-> 1); from 1 only EOS; from the dead state nothing.
LEGAL_SXV = torch.tensor(
    [[0, 0, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool
)  # fmt: skip


def make_batch(rows: list[int] | None = None) -> Batch:
    """'ab' (accepted), 'ba' (rejected), 'b' (accepted, one PAD position)."""
    batch = Batch(
        input_ids_bxt=torch.tensor([[1, 3, 4], [1, 4, 3], [1, 4, 0]]),
        target_next_bxt=torch.tensor([[3, 4, 2], [4, 3, 2], [4, 2, 0]]),
        target_class_bxt=torch.tensor([[0, 0, 1], [0, 1, 0], [0, 1, 0]]),
        target_state_bxt=torch.tensor([[0, 0, 1], [0, 1, 2], [0, 1, 0]]),
        loss_mask_bxt=torch.tensor([[True, True, True], [True, True, True], [True, True, False]]),
        lengths_b=torch.tensor([2, 2, 1]),
        labels_b=torch.tensor([1, 0, 1]),
    )
    if rows is None:
        return batch
    index = torch.tensor(rows)
    return Batch(
        **{k: None if t is None else t.index_select(0, index) for k, t in batch.__dict__.items()}
    )


def make_output(rows: list[int] | None = None) -> ModelOutput:
    """Predictions (argmax) per position; the PAD position of 'b' holds NaN/inf garbage."""
    preds = {
        "next": (torch.tensor([[3, 3, 2], [4, 3, 4], [4, 4, 0]]), V),
        "class": (torch.tensor([[0, 0, 1], [0, 0, 0], [0, 0, 1]]), 2),
        "state": (torch.tensor([[0, 0, 1], [0, 1, 1], [0, 0, 2]]), S),
    }
    logits = {}
    for key, (pred_bxt, num) in preds.items():
        logits_bxtxc = L * torch.nn.functional.one_hot(pred_bxt, num).float()
        logits_bxtxc[2, 2] = torch.tensor([math.nan, math.inf] + [-math.inf] * (num - 2))
        logits[key] = logits_bxtxc if rows is None else logits_bxtxc[rows]
    return ModelOutput(logits["next"], logits["class"], logits["state"])


def ce(num: int, right: bool) -> float:
    log_z = math.log(math.exp(L) + num - 1)
    return log_z - L if right else log_z


# By hand (positions t = 0..n; PAD of 'b' excluded):
#   next-token positions (accepted 'ab', 'b'): targets a b EOS | b EOS, preds a a EOS | b b -> 3/5
#   live positions: 'ab' 3 (all legal), 'ba' t=0,1 (b legal, a illegal), 'b' 2 (b legal, b not)
#     -> 5/7
#   class: 'ab' 3/3, 'ba' 2/3 (t=1 wrong), 'b' 1/2 -> 6/8; positives 3 of 8 -> baseline 5/8
#   string (class at t = n): right, right, wrong -> 2/3; labels 1 0 1 -> baseline 2/3
#   state: 3/3, 2/3, 1/2 -> 6/8
NLL = (3 * ce(V, True) + 2 * ce(V, False)) / 5
CLASS_CE = (6 * ce(2, True) + 2 * ce(2, False)) / 8
STATE_CE = (6 * ce(S, True) + 2 * ce(S, False)) / 8


def accumulate(cfg: TrainConfig, bins: list[int] | None, batches: list[list[int]] | None = None):
    acc = MetricAccumulator(LEGAL_SXV, cfg, bins, "cpu")
    for rows in batches or [None]:
        acc.update(make_output(rows), make_batch(rows))
    return acc.compute()


def test_split_metrics_match_hand_computed_values() -> None:
    cfg = TrainConfig(lambda_next=1.0, lambda_class=2.0, lambda_state=0.5, lambda_l1_u=9.0)
    m = accumulate(cfg, None)
    assert m.n_strings == 3
    assert m.token_acc == pytest.approx(3 / 5)
    assert m.next_valid == pytest.approx(5 / 7)
    assert m.class_acc == pytest.approx(6 / 8)
    assert m.class_baseline == pytest.approx(5 / 8)
    assert m.string_acc == pytest.approx(2 / 3)
    assert m.string_baseline == pytest.approx(2 / 3)
    assert m.state_acc == pytest.approx(6 / 8)
    assert m.nll == pytest.approx(NLL, rel=1e-6)
    assert m.loss == pytest.approx(NLL + 2.0 * CLASS_CE + 0.5 * STATE_CE, rel=1e-6)
    assert m.bins == []


def test_bins_match_hand_computed_values() -> None:
    m = accumulate(TrainConfig(), [1, 2, 3])
    short, long = m.bins
    # [1, 1]: 'b' alone.
    assert (short.lo, short.hi, short.n_strings) == (1, 1, 1)
    assert short.string_acc == 0.0 and short.string_baseline == 1.0
    assert short.class_acc == 0.5 and short.class_baseline == 0.5
    assert short.token_acc == 0.5 and short.next_valid == 0.5 and short.state_acc == 0.5
    # [2, 2]: 'ab' and 'ba'.
    assert (long.lo, long.hi, long.n_strings) == (2, 2, 2)
    assert long.string_acc == 1.0 and long.string_baseline == 0.5
    assert long.class_acc == pytest.approx(5 / 6)
    assert long.class_baseline == pytest.approx(4 / 6)
    assert long.token_acc == pytest.approx(2 / 3)  # only 'ab' is accepted
    assert long.next_valid == pytest.approx(4 / 5)
    assert long.state_acc == pytest.approx(5 / 6)


def test_strings_outside_every_bin_count_in_totals_only_and_empty_bins_are_left_out() -> None:
    m = accumulate(TrainConfig(), [2, 3, 10])  # 'b' (length 1) is below the first edge
    assert m.n_strings == 3 and m.class_acc == pytest.approx(6 / 8)
    assert [(b.lo, b.hi, b.n_strings) for b in m.bins] == [(2, 2, 2)]  # [3, 9] is empty


def test_a_bin_without_accepted_strings_has_no_token_accuracy() -> None:
    m = accumulate(TrainConfig(), [1, 3], batches=[[1]])  # 'ba' only
    (only,) = m.bins
    assert only.token_acc is None and only.next_valid == 0.5
    assert m.token_acc is None and m.nll is None
    assert m.loss == pytest.approx(
        (2 * ce(2, True) + ce(2, False)) / 3 + 0.5 * (2 * ce(S, True) + ce(S, False)) / 3
    )


def test_next_token_on_all_counts_rejected_strings() -> None:
    m = accumulate(TrainConfig(next_token_on_all=True), None)
    assert m.token_acc == pytest.approx(5 / 8)  # 'ba': b a right, EOS predicted as b
    assert m.next_valid == pytest.approx(5 / 7)  # unchanged: every live position counts


def test_batching_does_not_change_the_result() -> None:
    cfg, bins = TrainConfig(), [1, 2, 3]
    whole = accumulate(cfg, bins)
    split = accumulate(cfg, bins, batches=[[2], [0, 1]])
    assert split.model_dump(exclude={"loss", "nll"}) == whole.model_dump(exclude={"loss", "nll"})
    assert split.nll == pytest.approx(whole.nll, rel=1e-6)
    assert split.loss == pytest.approx(whole.loss, rel=1e-6)


def test_length_bins_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        MetricAccumulator(LEGAL_SXV, TrainConfig(), [1, 5, 5], "cpu")


def test_default_length_bins() -> None:
    data = {"regex": "a*b", "alphabet": "ab"}
    assert default_length_bins(DataConfig(**data)) == [1, 11, 21, 31, 41]
    wide = DataConfig(**data, min_len=0, max_len=99, ood_min_len=100, ood_max_len=199)
    assert default_length_bins(wide) == [0, 25, 50, 75, 100, 125, 150, 175, 200]
    gap = DataConfig(**data, min_len=2, max_len=12, ood_min_len=30, ood_max_len=33)
    assert default_length_bins(gap) == [2, 12, 13, 30, 34]
    no_ood = DataConfig(**data, min_len=1, max_len=40, n_test_ood=0)
    assert default_length_bins(no_ood) == [1, 11, 21, 31, 41]


# --- balanced accuracy, baselines, k-way classes, character prediction -------------------


def test_balanced_accuracies_and_the_next_valid_baseline_match_hand_computed_values() -> None:
    m = accumulate(TrainConfig(), None)
    # strings at t = n: label 1 -> 'ab' right, 'b' wrong (recall 1/2); label 0 -> 'ba' right.
    assert m.string_balanced_acc == pytest.approx((1 / 2 + 1) / 2)
    # prefixes: class 0 at 5 positions, all right; class 1 at 3, one right.
    assert m.class_balanced_acc == pytest.approx((1 + 1 / 3) / 2)
    # 7 live positions, 4 in state 0 (a and b legal), 3 in state 1 (EOS legal): best 4/7.
    assert m.next_valid_baseline == pytest.approx(4 / 7)
    assert m.char_acc is None and m.char_baseline is None  # no legal-next head


def test_balanced_accuracy_per_bin_uses_the_classes_present_in_the_bin() -> None:
    short, long = accumulate(TrainConfig(), [1, 2, 3]).bins
    assert short.string_balanced_acc == 0.0  # 'b' alone, label 1, wrong
    assert long.string_balanced_acc == 1.0  # 'ab' and 'ba', both right
    assert short.next_valid_baseline == 0.5 and long.next_valid_baseline == pytest.approx(3 / 5)


def test_three_way_classes_give_accuracy_majority_and_balanced_by_hand() -> None:
    batch = replace(make_batch(), target_class_bxt=torch.tensor([[0, 2, 1], [0, 1, 2], [0, 2, 0]]))
    out = make_output()
    pred_bxt = torch.tensor([[0, 2, 1], [0, 1, 1], [0, 2, 0]])
    out.logits_class = L * torch.nn.functional.one_hot(pred_bxt, 3).float()
    acc = MetricAccumulator(LEGAL_SXV, TrainConfig(), None, "cpu", num_classes=3)
    acc.update(out, batch)
    m = acc.compute()
    # strings (t = n): labels 1, 2, 2; 'ab' right, 'ba' wrong, 'b' right.
    assert m.string_acc == pytest.approx(2 / 3) and m.string_baseline == pytest.approx(2 / 3)
    assert m.string_balanced_acc == pytest.approx((1 + 1 / 2) / 2)
    # prefixes: class 0 x3 all right, class 1 x2 all right, class 2 x3 with one wrong.
    assert m.class_acc == pytest.approx(7 / 8) and m.class_baseline == pytest.approx(3 / 8)
    assert m.class_balanced_acc == pytest.approx((1 + 1 + 2 / 3) / 3)


def legal_logits(batch: Batch, wrong: tuple[int, int, int] | None = None) -> torch.Tensor:
    """+L where a token is legal, -L elsewhere; `wrong` = (b, t, v) flips one entry."""
    legal_bxtxv = LEGAL_SXV[batch.target_state_bxt]
    logits_bxtxv = torch.where(legal_bxtxv, L, -L)
    if wrong is not None:
        logits_bxtxv[wrong] = -logits_bxtxv[wrong]
    logits_bxtxv[2, 2] = math.nan  # PAD of 'b'
    return logits_bxtxv


def test_char_prediction_counts_a_string_only_when_every_set_is_exact() -> None:
    batch = make_batch()
    batch = replace(batch, target_legal_bxtxv=LEGAL_SXV[batch.target_state_bxt])
    out = make_output()
    out.legal_next_logits_bxtxv = legal_logits(batch, wrong=(1, 1, 3))  # 'ba' t=1: {EOS, a}
    acc = MetricAccumulator(LEGAL_SXV, TrainConfig(), [1, 2, 3], "cpu")
    acc.update(out, batch)
    m = acc.compute()
    assert m.char_pos_acc == pytest.approx(7 / 8)
    assert m.char_acc == pytest.approx(2 / 3)  # 'ab' and 'b' right, 'ba' wrong at t=1
    # Constant sets: {a, b} is the target at 4 of 8 positions, {EOS} at 3, {} at 1; no string
    # has one set at every position.
    assert m.char_pos_baseline == pytest.approx(4 / 8)
    assert m.char_baseline == 0.0
    short, long = m.bins
    assert (short.char_acc, short.char_pos_acc, short.char_pos_baseline) == (1.0, 1.0, 0.5)
    assert long.char_acc == 0.5 and long.char_pos_acc == pytest.approx(5 / 6)


def test_pad_and_bos_columns_do_not_count_in_character_prediction() -> None:
    batch = make_batch()
    batch = replace(batch, target_legal_bxtxv=LEGAL_SXV[batch.target_state_bxt])
    out = make_output()
    out.legal_next_logits_bxtxv = legal_logits(batch)
    out.legal_next_logits_bxtxv[..., :2] = 10.0  # PAD and BOS "predicted legal"
    acc = MetricAccumulator(LEGAL_SXV, TrainConfig(), None, "cpu")
    acc.update(out, batch)
    m = acc.compute()
    assert m.char_acc == 1.0 and m.char_pos_acc == 1.0


def test_a_constant_set_predictor_scores_one_on_tomita1() -> None:
    """On 1* every prefix is accepted and may go on with 1: the target is {EOS, 1} throughout,
    so one fixed set is right everywhere and the baselines are 1."""
    dfa, vocab = compile_regex("1*", "01"), Vocab("01")
    split = encode_split("val", ["1", "11", "1111"], None, dfa, vocab, "cpu", "char_prediction")
    batch = split.batch(np.arange(3))
    v = vocab.size
    out = ModelOutput(
        torch.zeros(3, 5, v), torch.zeros(3, 5, 2), torch.zeros(3, 5, dfa.num_states),
        legal_next_logits_bxtxv=torch.full((3, 5, v), -1.0),
    )  # fmt: skip
    acc = MetricAccumulator(legal_next_table(dfa, vocab), TrainConfig(), None, "cpu")
    acc.update(out, batch)
    m = acc.compute()
    assert m.char_baseline == 1.0 and m.char_pos_baseline == 1.0
    assert m.char_acc == 0.0 and m.char_pos_acc == 0.0  # predicting the empty set everywhere
    assert m.next_valid_baseline == 1.0  # '1' is always legal: the constant predictor


def test_length_mean_acc_weighs_every_length_alike() -> None:
    # 'ab' and 'ba' (length 2) right, 'b' (length 1) wrong: pooled 2/3, per length 1 and 0.
    acc = MetricAccumulator(LEGAL_SXV, TrainConfig(), None, "cpu", max_length=2)
    acc.update(make_output(), make_batch())
    metrics = acc.compute()
    assert metrics.string_acc == pytest.approx(2 / 3)
    assert metrics.length_mean_acc == pytest.approx(0.5)


def test_length_mean_acc_leaves_out_lengths_beyond_max_length() -> None:
    acc = MetricAccumulator(LEGAL_SXV, TrainConfig(), None, "cpu", max_length=1)
    acc.update(make_output(), make_batch())
    assert acc.compute().length_mean_acc == pytest.approx(0.0)  # only 'b', wrong
