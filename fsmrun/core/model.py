"""The sequence model: a pre-LN causal transformer (or an LSTM baseline) with three heads.

Heads read the final hidden state at every position: next token (V), class (2: is the prefix
accepted) and DFA state (S). Shapes: B batch, T time, C = d_model, H heads, V vocab, S states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsmrun.schemas.config import ModelConfig

INIT_STD = 0.02  # GPT-2 initialisation for linear and embedding weights


@dataclass
class ModelOutput:
    """Logits of the three heads and, with `capture=True`, attention maps and hidden states."""

    logits_next: Tensor  # (B, T, V)
    logits_class: Tensor  # (B, T, 2)
    logits_state: Tensor  # (B, T, S)
    attentions: list[Tensor] | None = None  # one (B, H, T, T) per layer; transformer only
    hidden_states: list[Tensor] | None = None  # (B, T, C): embedding output, then each layer


# --------------------------------------------------------------------------- embeddings


class TokenEmbedding(nn.Module):
    """Plain lookup table, or the factorized E = U @ V (U: V x rank, V: rank x C)."""

    def __init__(self, vocab_size: int, d_model: int, rank: int | None) -> None:
        super().__init__()
        self.rank = rank
        if rank is None:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        else:
            self.u = nn.Parameter(torch.empty(vocab_size, rank))
            self.v = nn.Parameter(torch.empty(rank, d_model))

    def matrix(self) -> Tensor:
        """The (V, C) embedding matrix E."""
        return self.weight if self.rank is None else self.u @ self.v

    def forward(self, input_ids_bxt: Tensor) -> Tensor:
        if self.rank is None:
            return F.embedding(input_ids_bxt, self.weight)  # (B, T, C)
        return F.embedding(input_ids_bxt, self.u) @ self.v  # (B, T, rank) @ (rank, C)


def sinusoid_table(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """The (length, dim) sinusoidal table of Vaswani et al.: sin on even, cos on odd columns."""
    pos_t = torch.arange(length, device=device, dtype=torch.float32)[:, None]
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


# --------------------------------------------------------------------------- transformer


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x_bxtxc: Tensor, rope_2xtxd: Tensor | None, capture: bool
    ) -> tuple[Tensor, Tensor | None]:
        B, T, C = x_bxtxc.shape
        q, k, v = self.qkv(x_bxtxc).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if rope_2xtxd is not None:  # (B, H, T, hd)
            q = apply_rope(q, rope_2xtxd[0], rope_2xtxd[1])
            k = apply_rope(k, rope_2xtxd[0], rope_2xtxd[1])
        dropout_p = self.dropout if self.training else 0.0
        att_bxhxtxt = None
        if capture:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, T)
            causal_txt = torch.ones(T, T, dtype=torch.bool, device=x_bxtxc.device).tril()
            scores = scores.masked_fill(~causal_txt, float("-inf"))
            att_bxhxtxt = scores.softmax(dim=-1)
            y = F.dropout(att_bxhxtxt, dropout_p, self.training) @ v  # (B, H, T, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y)), att_bxhxtxt


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x_bxtxc: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x_bxtxc))))


class Block(nn.Module):
    """Pre-LN block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(
        self, x_bxtxc: Tensor, rope_2xtxd: Tensor | None, capture: bool
    ) -> tuple[Tensor, Tensor | None]:
        attn_out, att_bxhxtxt = self.attn(self.ln_1(x_bxtxc), rope_2xtxd, capture)
        x_bxtxc = x_bxtxc + attn_out
        x_bxtxc = x_bxtxc + self.mlp(self.ln_2(x_bxtxc))
        return x_bxtxc, att_bxhxtxt


# --------------------------------------------------------------------------- the model


class SequenceModel(nn.Module):
    """Token embedding -> transformer blocks or LSTM layers -> final LayerNorm -> three heads."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_states: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_states = num_states
        self.token_embed = TokenEmbedding(vocab_size, cfg.d_model, cfg.factorized_rank)
        self.drop = nn.Dropout(cfg.dropout)
        uses_positions = cfg.arch == "transformer"
        if uses_positions and cfg.pos_encoding == "learned":
            self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model)
        if uses_positions and cfg.pos_encoding == "sinusoidal":
            table = sinusoid_table(cfg.max_len, cfg.d_model)
            self.register_buffer("sinusoid_txc", table, persistent=False)
        if uses_positions and cfg.pos_encoding == "rope":
            table = rope_tables(cfg.max_len, cfg.d_model // cfg.n_heads)
            self.register_buffer("rope_2xtxd", table, persistent=False)
        if cfg.arch == "transformer":
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        else:
            # One single-layer LSTM per layer so capture can return every layer's output.
            self.lstms = nn.ModuleList(
                nn.LSTM(cfg.d_model, cfg.d_model, batch_first=True) for _ in range(cfg.n_layers)
            )
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.head_next = None
        if not cfg.tie_embeddings:
            self.head_next = nn.Linear(cfg.d_model, vocab_size, bias=cfg.bias)
        elif cfg.factorized_rank is None:
            # Shared Parameter: the head's weight *is* the embedding table.
            self.head_next = nn.Linear(cfg.d_model, vocab_size, bias=False)
            self.head_next.weight = self.token_embed.weight
        # else: tied and factorized, logits = h @ (U @ V)^T computed in forward.
        self.head_class = nn.Linear(cfg.d_model, 2, bias=cfg.bias)
        self.head_state = nn.Linear(cfg.d_model, num_states, bias=cfg.bias)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from `generator` (None: torch's global RNG).

        Linear and embedding weights N(0, 0.02), residual projections N(0, 0.02 / sqrt(2L))
        (GPT-2), biases 0, LayerNorm weights 1; U and V each N(0, sqrt(0.02) * rank^-1/4) so
        that E = U @ V has std 0.02; LSTM weights and biases U(-1/sqrt(C), 1/sqrt(C)) as in
        torch. Modules are visited in registration order, so the draws are reproducible.
        """
        g = generator
        resid_std = INIT_STD / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if module is self.head_next and self.cfg.tie_embeddings:
                    continue  # the embedding table, initialised below
                std = resid_std if name.endswith(".proj") else INIT_STD
                nn.init.normal_(module.weight, 0.0, std, generator=g)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, INIT_STD, generator=g)
            elif isinstance(module, TokenEmbedding):
                if module.rank is None:
                    nn.init.normal_(module.weight, 0.0, INIT_STD, generator=g)
                else:
                    factor_std = math.sqrt(INIT_STD) * module.rank**-0.25
                    nn.init.normal_(module.u, 0.0, factor_std, generator=g)
                    nn.init.normal_(module.v, 0.0, factor_std, generator=g)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LSTM):
                bound = 1.0 / math.sqrt(module.hidden_size)
                for param in module.parameters():
                    nn.init.uniform_(param, -bound, bound, generator=g)

    def l1_u(self) -> Tensor:
        """L1 norm of the factorized embedding's U (a zero scalar when not factorized)."""
        if self.token_embed.rank is None:
            return self.token_embed.weight.new_zeros(())
        return self.token_embed.u.abs().sum()

    def parameter_count(self) -> int:
        """Number of trainable scalars (a tied weight counts once)."""
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        """One line for the console and run.json."""
        cfg = self.cfg
        parts = [cfg.arch, f"d_model={cfg.d_model}", f"n_layers={cfg.n_layers}"]
        if cfg.arch == "transformer":
            parts += [f"n_heads={cfg.n_heads}", f"d_ff={cfg.d_ff}", f"pos={cfg.pos_encoding}"]
        if cfg.factorized_rank is not None:
            parts.append(f"rank={cfg.factorized_rank}")
        if cfg.tie_embeddings:
            parts.append("tied")
        parts += [f"vocab={self.vocab_size}", f"states={self.num_states}"]
        parts.append(f"params={self.parameter_count():,}")
        return " ".join(parts)

    def _embed(self, input_ids_bxt: Tensor) -> tuple[Tensor, Tensor | None]:
        """Token (+ absolute position) embedding, and the rope tables when rope is used."""
        n_pos = input_ids_bxt.shape[1]  # a shape, so checking it never syncs
        x_bxtxc = self.token_embed(input_ids_bxt)
        if self.cfg.arch != "transformer":
            return x_bxtxc, None  # the LSTM is order-aware by itself
        rope_2xtxd = None
        pos = self.cfg.pos_encoding
        if pos == "learned":
            if n_pos > self.cfg.max_len:
                raise ValueError(
                    f"input length {n_pos} exceeds max_len {self.cfg.max_len} of the learned "
                    "positional encoding; raise model.max_len or use sinusoidal, rope or none"
                )
            x_bxtxc = x_bxtxc + self.pos_embed.weight[:n_pos]
        elif pos == "sinusoidal":
            table = self.sinusoid_txc
            if n_pos > table.shape[0]:  # longer than max_len: compute the table afresh
                table = sinusoid_table(n_pos, self.cfg.d_model, device=table.device)
            x_bxtxc = x_bxtxc + table[:n_pos]
        elif pos == "rope":
            rope_2xtxd = self.rope_2xtxd
            if n_pos > rope_2xtxd.shape[1]:
                rope_2xtxd = rope_tables(n_pos, rope_2xtxd.shape[2], device=rope_2xtxd.device)
            rope_2xtxd = rope_2xtxd[:, :n_pos]
        return x_bxtxc, rope_2xtxd

    def forward(self, input_ids_bxt: Tensor, capture: bool = False) -> ModelOutput:
        """Logits at every position; `capture` also returns attention maps and hidden states.

        Causal at every position, so right padding never changes outputs at real positions.
        """
        x_bxtxc, rope_2xtxd = self._embed(input_ids_bxt)
        x_bxtxc = self.drop(x_bxtxc)
        hidden_states = [x_bxtxc] if capture else None
        attentions = [] if capture and self.cfg.arch == "transformer" else None
        if self.cfg.arch == "transformer":
            for block in self.blocks:
                x_bxtxc, att_bxhxtxt = block(x_bxtxc, rope_2xtxd, capture)
                if capture:
                    attentions.append(att_bxhxtxt)
                    hidden_states.append(x_bxtxc)
        else:
            for i, lstm in enumerate(self.lstms):
                if i > 0:
                    x_bxtxc = self.drop(x_bxtxc)  # dropout between layers, as nn.LSTM does
                x_bxtxc, _ = lstm(x_bxtxc)
                if capture:
                    hidden_states.append(x_bxtxc)
        h_bxtxc = self.ln_f(x_bxtxc)
        if self.head_next is not None:
            logits_next = self.head_next(h_bxtxc)  # (B, T, V)
        else:
            logits_next = F.linear(h_bxtxc, self.token_embed.matrix())  # h @ (U @ V)^T
        return ModelOutput(
            logits_next=logits_next,
            logits_class=self.head_class(h_bxtxc),  # (B, T, 2)
            logits_state=self.head_state(h_bxtxc),  # (B, T, S)
            attentions=attentions,
            hidden_states=hidden_states,
        )


def build_model(
    cfg: ModelConfig,
    vocab_size: int,
    num_states: int,
    generator: torch.Generator | None = None,
) -> SequenceModel:
    """A `SequenceModel` on the CPU, initialised from `generator` (None: the global RNG).

    Building never advances torch's global RNG when a generator is given: the modules'
    default initialisation runs inside a forked RNG and is then overwritten.
    """
    with torch.random.fork_rng(devices=[]):
        model = SequenceModel(cfg, vocab_size, num_states)
    model.init_weights(generator)
    return model
