"""Tests for fsmrun.nn.backbones: ALiBi slopes and biases (the backbones run in test_model)."""

from __future__ import annotations

import torch

from fsmrun.nn.positions import alibi_causal_bias, alibi_slopes


def test_alibi_slopes_are_geometric_and_interpolated_for_other_head_counts() -> None:
    assert alibi_slopes(8) == [2.0**-k for k in range(1, 9)]
    assert alibi_slopes(4) == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]
    # 6 heads: the 4-head slopes, then slopes 1 and 3 of the 8-head set
    assert alibi_slopes(6) == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]


def test_alibi_bias_is_minus_slope_times_distance_under_the_causal_mask() -> None:
    bias_hxtxt = alibi_causal_bias(torch.tensor([0.5, 0.25]), 3)
    inf = float("inf")
    expected = torch.tensor(
        [
            [[0.0, -inf, -inf], [-0.5, 0.0, -inf], [-1.0, -0.5, 0.0]],
            [[0.0, -inf, -inf], [-0.25, 0.0, -inf], [-0.5, -0.25, 0.0]],
        ]
    )
    torch.testing.assert_close(bias_hxtxt, expected)
