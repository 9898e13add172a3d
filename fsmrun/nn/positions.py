"""Positional encodings of the transformer: sinusoidal tables, rotary (RoPE) tables, ALiBi
biases (causal and bidirectional) and the Transformer-XL relative terms. Shapes: T time,
H heads, hd head width, P = 2T - 1 distances.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoid_table(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """The (length, dim) sinusoidal table of Vaswani et al.: sin on even, cos on odd columns."""
    return sinusoids(torch.arange(length, device=device, dtype=torch.float32), dim)


def sinusoids(pos_t: Tensor, dim: int) -> Tensor:
    """(len(pos_t), dim) sinusoids of the (float, possibly negative) positions `pos_t`:
    column 2i is sin(p / 10000^(2i/dim)), column 2i + 1 its cos."""
    device = pos_t.device
    pos_t = pos_t.float()[:, None]
    length = pos_t.shape[0]
    inv_freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table_txc = torch.zeros(length, dim, device=device)
    table_txc[:, 0::2] = torch.sin(pos_t * inv_freq)
    table_txc[:, 1::2] = torch.cos(pos_t * inv_freq[: dim // 2])
    return table_txc


def rope_tables(length: int, head_dim: int, device: torch.device | None = None) -> Tensor:
    """cos and sin of the rotary angles, stacked: (2, length, head_dim) in rotate-half layout."""
    inv_freq = 1.0 / (
        10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    )
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd)
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x_bxhxtxd: Tensor, cos_txd: Tensor, sin_txd: Tensor) -> Tensor:
    """Rotate each (first half, second half) pair of channels by its position's angle."""
    x1, x2 = x_bxhxtxd.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x_bxhxtxd * cos_txd.to(x_bxhxtxd.dtype) + rotated * sin_txd.to(x_bxhxtxd.dtype)


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al.): 2^(-8/n * (h+1)) for n a power of two; otherwise the
    slopes of the next lower power of two, then every other slope of twice that many."""
    if math.log2(n_heads).is_integer():
        return [2.0 ** (-8.0 / n_heads * (h + 1)) for h in range(n_heads)]
    lower = 2 ** math.floor(math.log2(n_heads))
    return alibi_slopes(lower) + alibi_slopes(2 * lower)[0::2][: n_heads - lower]


def alibi_causal_bias(slopes_h: Tensor, length: int) -> Tensor:
    """(H, T, T) additive attention bias: -m_h * (i - j) at and below the diagonal, -inf above."""
    pos_t = torch.arange(length, device=slopes_h.device)
    distance_txt = (pos_t[:, None] - pos_t[None, :]).float()  # i - j
    bias_hxtxt = -slopes_h[:, None, None] * distance_txt
    return bias_hxtxt.masked_fill(distance_txt < 0, float("-inf"))


def alibi_bidirectional_bias(slopes_h: Tensor, length: int) -> Tensor:
    """(H, T, T) additive attention bias of the encoder: -m_h * |i - j| everywhere."""
    pos_t = torch.arange(length, device=slopes_h.device)
    distance_txt = (pos_t[:, None] - pos_t[None, :]).abs().float()
    return -slopes_h[:, None, None] * distance_txt


def relative_distance_index(length: int, device: torch.device | None = None) -> Tensor:
    """long (T, T): column of distance i - j in a table of distances T-1, T-2, ..., -(T-1)."""
    pos_t = torch.arange(length, device=device)
    return (length - 1) - (pos_t[:, None] - pos_t[None, :])


def relative_scores(
    q_bxhxtxd: Tensor, k_bxhxtxd: Tensor, r_hxpxd: Tensor, u_hxd: Tensor, v_hxd: Tensor
) -> Tensor:
    """The Transformer-XL terms beside q_i . k_j (Dai et al. 2019, eq. 4, terms b, c and d):
    u . k_j + (q_i + v) . r_(i-j), as a (B, H, T, T) additive score (not yet scaled).

    `r_hxpxd` holds the projected encodings of the distances T-1, ..., -(T-1) (P = 2T - 1).
    """
    T = q_bxhxtxd.shape[2]
    content_bxhx1xt = (k_bxhxtxd @ u_hxd.unsqueeze(-1)).transpose(-2, -1)  # u . k_j
    by_distance_bxhxtxp = (q_bxhxtxd + v_hxd[:, None, :]) @ r_hxpxd.transpose(-2, -1)
    index_txt = relative_distance_index(T, q_bxhxtxd.device)
    index_bxhxtxt = index_txt.expand(*by_distance_bxhxtxp.shape[:2], T, T)
    return content_bxhx1xt + by_distance_bxhxtxp.gather(-1, index_bxhxtxt)
