"""The non-causal encoder (bidirectional attention, answer at an appended query token) and the
Transformer-XL relative encoding, against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from fsmrun.nn.backbones import SelfAttention
from fsmrun.nn.model import build_model
from fsmrun.nn.positions import relative_scores, sinusoids
from fsmrun.schemas.config import ModelConfig

SIN1, COS1 = math.sin(1.0), math.cos(1.0)


def identity_attention(causal_bias: bool) -> tuple[SelfAttention, torch.Tensor, torch.Tensor]:
    """One head of width 2 with q = k = v = x, W_r = I, u = (0.5, 0), v = (0, 0.25)."""
    cfg = ModelConfig(d_model=2, n_heads=1, d_ff=4, pos_encoding="relative", bias=False)
    attn = SelfAttention(cfg)
    with torch.no_grad():
        attn.qkv.weight.copy_(torch.cat([torch.eye(2)] * 3))
        attn.proj.weight.copy_(torch.eye(2))
        attn.rel_proj.weight.copy_(torch.eye(2))
        attn.rel_u.copy_(torch.tensor([[0.5, 0.0]]))
        attn.rel_v.copy_(torch.tensor([[0.0, 0.25]]))
    bias = torch.zeros(1, 1, 2, 2)
    if causal_bias:
        bias[..., 0, 1] = float("-inf")
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # x0 = e1, x1 = e2
    return attn.eval(), x, bias


def test_sinusoids_of_signed_distances_are_sin_then_cos() -> None:
    # d_model 2: one frequency, 1; the table lists distances T-1 .. -(T-1).
    table = sinusoids(torch.tensor([1.0, 0.0, -1.0]), 2)
    expected = torch.tensor([[SIN1, COS1], [0.0, 1.0], [-SIN1, COS1]])
    assert torch.allclose(table, expected)


def test_relative_terms_match_a_hand_computed_case() -> None:
    # score(i, j) beside q_i.k_j: u.k_j + (q_i + v).r_(i-j), r_d = (sin d, cos d).
    # (0,0): u.e1 = 0.5 + (1, .25).(0, 1) = 0.75     (0,1): 0 + (1, .25).(-sin1, cos1)
    # (1,0): 0.5 + (0, 1.25).(sin1, cos1)            (1,1): 0 + (0, 1.25).(0, 1) = 1.25
    q = k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    r = sinusoids(torch.tensor([1.0, 0.0, -1.0]), 2)[None]  # W_r = I, one head
    got = relative_scores(q, k, r, torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.25]]))
    expected = torch.tensor([[0.75, -SIN1 + 0.25 * COS1], [0.5 + 1.25 * COS1, 1.25]])
    assert torch.allclose(got[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_relative_attention_weights_match_the_hand_computed_softmax(causal: bool) -> None:
    attn, x, bias = identity_attention(causal)
    rel = sinusoids(torch.tensor([1.0, 0.0, -1.0]), 2)
    y_captured, att = attn(x, None, bias, True, rel)
    y_fused, _ = attn(x, None, bias, False, rel)  # SDPA with the scores as a float mask
    # full scores: q.k + the terms above, over sqrt(head width 2)
    scores = torch.tensor([[1.75, -SIN1 + 0.25 * COS1], [0.5 + 1.25 * COS1, 2.25]])
    scores = scores / math.sqrt(2)
    if causal:
        scores[0, 1] = float("-inf")
    expected = scores.softmax(dim=-1)
    assert torch.allclose(att[0, 0], expected, atol=1e-6)
    assert torch.allclose(y_captured, expected @ x[0], atol=1e-6)
    assert torch.allclose(y_fused, y_captured, atol=1e-6)
    if causal:
        assert att[0, 0, 0, 1].item() == 0.0


def small(causal: bool, pos: str = "sinusoidal") -> torch.nn.Module:
    cfg = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, causal=causal, pos_encoding=pos)
    return build_model(cfg, vocab_size=5, num_states=3, generator=torch.Generator().manual_seed(0))


IDS = torch.tensor([[1, 3, 4, 3, 4]])  # BOS a b a b
LATER = torch.tensor([[1, 3, 4, 3, 3]])  # the last symbol changed


@pytest.mark.parametrize("pos", ["sinusoidal", "relative", "alibi", "rope", "learned", "none"])
def test_the_encoder_sees_the_future_and_a_causal_model_does_not(pos: str) -> None:
    encoder, causal = small(False, pos).eval(), small(True, pos).eval()
    with torch.no_grad():
        enc_a, enc_b = encoder(IDS).logits_class, encoder(LATER).logits_class
        dec_a, dec_b = causal(IDS).logits_class, causal(LATER).logits_class
    # Position 1 (after 'a') of the encoder changes with the symbol at position 4.
    assert not torch.allclose(enc_a[0, 1], enc_b[0, 1])
    assert torch.equal(dec_a[0, :4], dec_b[0, :4])


def test_the_encoder_answer_at_t_n_is_the_query_reading_and_ignores_padding() -> None:
    model = small(False).eval()
    padded = torch.tensor([[1, 3, 4, 3, 4, 0, 0], [1, 4, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        both = model(padded).logits_class
        alone = model(IDS).logits_class
        short = model(torch.tensor([[1, 4]])).logits_class
        captured = model(IDS, capture=True)
    assert torch.allclose(both[0, :5], alone[0], atol=1e-6)
    assert torch.allclose(both[1, :2], short[0], atol=1e-6)
    # The captured last layer has T + 1 positions: the query (at n + 1 = 5) is read at t = n.
    query_h = model.ln_f(captured.hidden_states[-1][0, 5])
    assert torch.allclose(model.head_class(query_h), alone[0, 4], atol=1e-6)
    assert captured.attentions[0].shape == (1, 2, 6, 6)
