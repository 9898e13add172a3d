"""Masked multi-task loss: masking, weights, hand-computed values, determinism."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from fsmrun.data.encoding import Batch
from fsmrun.nn.losses import LOSS_KEYS, class_loss_mask, compute_losses
from fsmrun.nn.model import ModelOutput
from fsmrun.schemas.config import TrainConfig

V, S = 5, 3  # PAD BOS EOS a b; states of a*b: 0 start, 1 accept, 2 dead
L = 3.0  # logit of the predicted class (0 elsewhere)


def make_batch() -> Batch:
    """'ab' (accepted), 'ba' (rejected), 'b' (accepted, one PAD position) in the language a*b."""
    return Batch(
        input_ids_bxt=torch.tensor([[1, 3, 4], [1, 4, 3], [1, 4, 0]]),
        target_next_bxt=torch.tensor([[3, 4, 2], [4, 3, 2], [4, 2, 0]]),
        target_class_bxt=torch.tensor([[0, 0, 1], [0, 1, 0], [0, 1, 0]]),
        target_state_bxt=torch.tensor([[0, 0, 1], [0, 1, 2], [0, 1, 0]]),
        loss_mask_bxt=torch.tensor([[True, True, True], [True, True, True], [True, True, False]]),
        lengths_b=torch.tensor([2, 2, 1]),
        labels_b=torch.tensor([1, 0, 1]),
    )


def one_hot_logits(pred_bxt: torch.Tensor, num_classes: int) -> torch.Tensor:
    return L * torch.nn.functional.one_hot(pred_bxt, num_classes).float()


def make_output(pad_value: float = 0.0) -> ModelOutput:
    """Predictions chosen so that each loss mixes right and wrong positions."""
    out = ModelOutput(
        logits_next=one_hot_logits(torch.tensor([[3, 3, 2], [4, 3, 4], [4, 4, 0]]), V),
        logits_class=one_hot_logits(torch.tensor([[0, 0, 1], [0, 0, 0], [0, 0, 0]]), 2),
        logits_state=one_hot_logits(torch.tensor([[0, 0, 1], [0, 1, 1], [0, 0, 0]]), S),
    )
    for logits in (out.logits_next, out.logits_class, out.logits_state):
        logits[2, 2] = pad_value  # the PAD position of 'b'
    return out


def ce(num_classes: int, right: bool) -> float:
    """Cross-entropy of one position with logits L at the prediction, 0 elsewhere."""
    log_z = math.log(math.exp(L) + num_classes - 1)
    return log_z - L if right else log_z


# Next-token positions (accepted strings 'ab', 'b'): 3 right of 5; class and state: 6 of 8.
NEXT = (3 * ce(V, True) + 2 * ce(V, False)) / 5
CLASS = (6 * ce(2, True) + 2 * ce(2, False)) / 8
STATE = (6 * ce(S, True) + 2 * ce(S, False)) / 8


def test_losses_match_hand_computed_values() -> None:
    cfg = TrainConfig(lambda_next=1.0, lambda_class=1.0, lambda_state=0.5)
    losses = compute_losses(make_output(), make_batch(), cfg)
    assert set(losses) == set(LOSS_KEYS)
    assert losses["next"].item() == pytest.approx(NEXT, rel=1e-6)
    assert losses["class"].item() == pytest.approx(CLASS, rel=1e-6)
    assert losses["state"].item() == pytest.approx(STATE, rel=1e-6)
    assert losses["l1_u"].item() == 0.0
    assert losses["total"].item() == pytest.approx(NEXT + CLASS + 0.5 * STATE, rel=1e-6)
    assert all(v.dtype == torch.float32 and v.shape == () for v in losses.values())


def test_uniform_logits_give_log_of_the_number_of_classes() -> None:
    batch = make_batch()
    out = ModelOutput(
        logits_next=torch.zeros(3, 3, V),
        logits_class=torch.zeros(3, 3, 2),
        logits_state=torch.zeros(3, 3, S),
    )
    losses = compute_losses(out, batch, TrainConfig())
    assert losses["next"].item() == pytest.approx(math.log(V))
    assert losses["class"].item() == pytest.approx(math.log(2))
    assert losses["state"].item() == pytest.approx(math.log(S))


def test_pad_positions_carry_no_loss_even_with_inf_or_nan_logits() -> None:
    batch, cfg = make_batch(), TrainConfig(lambda_l1_u=0.3)
    reference = compute_losses(make_output(0.0), batch, cfg, l1_u=torch.tensor(2.0))
    for garbage in (1e4, -math.inf, math.inf, math.nan):
        out = make_output(garbage)
        for logits in (out.logits_next, out.logits_class, out.logits_state):
            logits.requires_grad_(True)
        losses = compute_losses(out, batch, cfg, l1_u=torch.tensor(2.0))
        for key in LOSS_KEYS:
            assert torch.equal(losses[key], reference[key]), (garbage, key)
        losses["total"].backward()
        for logits in (out.logits_next, out.logits_class, out.logits_state):
            assert torch.isfinite(logits.grad).all()
            assert torch.equal(logits.grad[2, 2], torch.zeros_like(logits.grad[2, 2]))


def test_rejected_strings_carry_no_next_token_loss_by_default() -> None:
    batch, cfg = make_batch(), TrainConfig()
    reference = compute_losses(make_output(), batch, cfg)
    out = make_output()
    out.logits_next[1] = torch.randn(3, V)  # 'ba' is rejected
    assert torch.equal(compute_losses(out, batch, cfg)["next"], reference["next"])


def test_next_token_on_all_adds_the_rejected_strings() -> None:
    cfg = TrainConfig(next_token_on_all=True)
    losses = compute_losses(make_output(), make_batch(), cfg)
    # 'ba' adds 3 positions, 2 right (4, 3) and 1 wrong (EOS predicted as b).
    expected = (5 * ce(V, True) + 3 * ce(V, False)) / 8
    assert losses["next"].item() == pytest.approx(expected, rel=1e-6)


def test_next_token_on_all_takes_loss_on_rejected_strings_only_batch() -> None:
    batch = make_batch()
    rejected = replace(batch, labels_b=torch.zeros(3, dtype=torch.long))
    default = compute_losses(make_output(), rejected, TrainConfig())
    on_all = compute_losses(make_output(), rejected, TrainConfig(next_token_on_all=True))
    assert default["next"].item() == 0.0  # no accepted string: 0, not NaN
    assert torch.isfinite(default["total"])
    assert on_all["next"].item() == pytest.approx((5 * ce(V, True) + 3 * ce(V, False)) / 8)


def test_weights_scale_components() -> None:
    batch, out, l1_u = make_batch(), make_output(), torch.tensor(0.25)
    cfg = TrainConfig(lambda_next=2.0, lambda_class=0.0, lambda_state=3.0, lambda_l1_u=4.0)
    losses = compute_losses(out, batch, cfg, l1_u=l1_u)
    assert losses["class"].item() == pytest.approx(CLASS, rel=1e-6)  # reported, not weighted
    expected = 2.0 * losses["next"] + 3.0 * losses["state"] + 4.0 * 0.25
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["l1_u"].item() == 0.25


def test_identical_tensors_give_identical_losses() -> None:
    cfg = TrainConfig(lambda_l1_u=0.1)
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(3, 3, c, generator=generator) for c in (V, 2, S)]
    first = compute_losses(ModelOutput(*logits), make_batch(), cfg, l1_u=torch.tensor(1.5))
    again = [t.clone() for t in logits]
    second = compute_losses(ModelOutput(*again), make_batch(), cfg, l1_u=torch.tensor(1.5))
    for key in LOSS_KEYS:
        assert torch.equal(first[key], second[key])


def test_low_precision_logits_are_reduced_in_float32() -> None:
    batch, cfg = make_batch(), TrainConfig()
    out = make_output()
    low = ModelOutput(
        *(t.to(torch.bfloat16) for t in (out.logits_next, out.logits_class, out.logits_state))
    )
    losses = compute_losses(low, batch, cfg)
    # L = 3 and 0 are exact in bfloat16, so float32 reduction reproduces the float32 values.
    assert losses["total"].dtype == torch.float32
    assert losses["next"].item() == pytest.approx(NEXT, rel=1e-6)


# --- class loss position and the legal-next head -----------------------------------------

# legal[q, tok] of a*b over PAD BOS EOS a b: from 0 a and b, from 1 only EOS, from 2 nothing.
LEGAL_SXV = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)


def with_legal_targets(batch: Batch) -> Batch:
    legal_bxtxv = LEGAL_SXV[batch.target_state_bxt] & batch.loss_mask_bxt.unsqueeze(-1)
    return replace(batch, target_legal_bxtxv=legal_bxtxv)


def test_the_final_class_loss_mask_is_t_equals_n_of_each_string() -> None:
    batch = make_batch()  # lengths 2, 2, 1
    final = class_loss_mask(batch, "final")
    assert final.tolist() == [[False, False, True], [False, False, True], [False, True, False]]
    assert torch.equal(class_loss_mask(batch, "all"), batch.loss_mask_bxt)


def test_final_class_loss_is_taken_on_the_last_position_only() -> None:
    losses = compute_losses(make_output(), make_batch(), TrainConfig(class_loss_on="final"))
    # t = n: 'ab' predicts 1 (right), 'ba' 0 (right), 'b' 0 where 1 is due (wrong).
    expected = (2 * ce(2, True) + ce(2, False)) / 3
    assert losses["class"].item() == pytest.approx(expected, rel=1e-6)


def test_final_class_loss_ignores_every_earlier_prefix() -> None:
    out = make_output()
    out.logits_class[:, 0] = torch.tensor([50.0, -50.0])  # t = 0 badly wrong nowhere final
    cfg = TrainConfig(class_loss_on="final")
    assert torch.equal(
        compute_losses(out, make_batch(), cfg)["class"],
        compute_losses(make_output(), make_batch(), cfg)["class"],
    )


def legal_output(pad_value: float = 0.0) -> ModelOutput:
    out = make_output()
    logits_bxtxv = torch.zeros(3, 3, V)
    logits_bxtxv[1, 2, 4] = L  # 'ba' at t = 2 is dead: b predicted legal, wrongly
    logits_bxtxv[2, 2] = pad_value  # the PAD position of 'b'
    out.legal_next_logits_bxtxv = logits_bxtxv
    return out


def test_legal_bce_is_summed_over_eos_and_symbols_and_meaned_over_real_positions() -> None:
    cfg = TrainConfig(lambda_next=0.0, lambda_class=0.0, lambda_state=0.0, lambda_legal=2.0)
    losses = compute_losses(legal_output(), with_legal_targets(make_batch()), cfg)
    # 8 real positions x 3 columns (EOS a b): logit 0 costs log 2 whatever the target, except
    # one element with logit L and target 0, which costs log(1 + e^L). PAD and BOS columns
    # carry nothing.
    expected = (23 * math.log(2) + math.log1p(math.exp(L))) / 8
    assert losses["legal"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["total"].item() == pytest.approx(2.0 * expected, rel=1e-6)


def test_legal_bce_without_the_end_bit_sums_the_symbol_columns_only() -> None:
    cfg = TrainConfig(legal_next_eos=False)
    out = legal_output()
    out.legal_next_logits_bxtxv[:, :, 2] = 99.0  # the EOS column: no longer trained
    losses = compute_losses(out, with_legal_targets(make_batch()), cfg)
    # 8 real positions x 2 columns (a b), all at logit 0 but the one at L with target 0.
    expected = (15 * math.log(2) + math.log1p(math.exp(L))) / 8
    assert losses["legal"].item() == pytest.approx(expected, rel=1e-6)


def test_legal_bce_ignores_pad_positions_and_pad_bos_columns() -> None:
    batch, cfg = with_legal_targets(make_batch()), TrainConfig()
    reference = compute_losses(legal_output(), batch, cfg)["legal"]
    for garbage in (math.inf, -math.inf, math.nan):
        out = legal_output(garbage)
        out.legal_next_logits_bxtxv[:, :, :2] = 99.0  # PAD and BOS columns: no signal
        out.legal_next_logits_bxtxv.requires_grad_(True)
        losses = compute_losses(out, batch, cfg)
        assert torch.equal(losses["legal"], reference)
        losses["total"].backward()
        grad = out.legal_next_logits_bxtxv.grad
        assert torch.isfinite(grad).all() and (grad[2, 2] == 0).all() and (grad[..., :2] == 0).all()


def test_without_a_legal_head_the_legal_loss_is_zero_and_not_in_the_total() -> None:
    losses = compute_losses(make_output(), make_batch(), TrainConfig(lambda_legal=5.0))
    assert losses["legal"].item() == 0.0
    assert losses["total"].item() == pytest.approx(NEXT + CLASS + 0.5 * STATE, rel=1e-6)
