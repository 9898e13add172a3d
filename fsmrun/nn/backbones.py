"""The architectures under the model's heads: a pre-LN transformer, causal or a non-causal
encoder (with its positional encodings, learned | sinusoidal | rope | alibi | relative | none)
and stacked LSTM, GRU or Elman RNN (tanh or ReLU) cells.

Each backbone maps token embeddings to hidden states and owns its initialisation. Shapes: B
batch, T time, C = d_model, H heads, hd head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsmrun.nn.positions import (
    alibi_bidirectional_bias,
    alibi_causal_bias,
    alibi_slopes,
    apply_rope,
    relative_scores,
    rope_tables,
    sinusoid_table,
    sinusoids,
)
from fsmrun.schemas.config import ModelConfig

INIT_STD = 0.02  # GPT-2 initialisation for linear and embedding weights


def init_linear_(linear: nn.Linear, std: float, generator: torch.Generator | None) -> None:
    """Weight N(0, std), bias 0."""
    nn.init.normal_(linear.weight, 0.0, std, generator=generator)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def init_layer_norm_(norm: nn.LayerNorm) -> None:
    """Weight 1, bias 0."""
    nn.init.ones_(norm.weight)
    if norm.bias is not None:
        nn.init.zeros_(norm.bias)


# --------------------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    """Multi-head self-attention. The mask (causal, padding) and any positional score bias
    arrive as one additive `bias` (None: a plain causal mask, the fused fast path)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.relative = cfg.pos_encoding == "relative"
        if self.relative:
            # Transformer-XL: W_r projects the distance sinusoids; u and v are the content
            # and position biases of each head.
            self.rel_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
            self.rel_u = nn.Parameter(torch.zeros(cfg.n_heads, self.head_dim))
            self.rel_v = nn.Parameter(torch.zeros(cfg.n_heads, self.head_dim))

    def forward(
        self,
        x_bxtxc: Tensor,
        rope_2xtxd: Tensor | None,
        bias: Tensor | None,
        capture: bool,
        rel_pxc: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """`bias`: additive scores broadcastable to (B, H, T, T) that already hold the mask
        (-inf where a query may not look); `rel_pxc`: sinusoids of the distances T-1..-(T-1)
        (relative encoding only)."""
        B, T, C = x_bxtxc.shape
        q, k, v = self.qkv(x_bxtxc).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if rope_2xtxd is not None:  # (B, H, T, hd)
            q = apply_rope(q, rope_2xtxd[0], rope_2xtxd[1])
            k = apply_rope(k, rope_2xtxd[0], rope_2xtxd[1])
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.relative and rel_pxc is not None:
            r_hxpxd = self.rel_proj(rel_pxc.to(x_bxtxc.dtype))
            r_hxpxd = r_hxpxd.view(-1, self.n_heads, self.head_dim).transpose(0, 1)
            rel = relative_scores(q, k, r_hxpxd, self.rel_u.to(q.dtype), self.rel_v.to(q.dtype))
            # SDPA scales q . k only: scale the relative terms here, add the mask.
            bias = rel * scale if bias is None else rel * scale + bias.to(rel.dtype)
        dropout_p = self.dropout if self.training else 0.0
        att_bxhxtxt = None
        if capture:
            scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, T)
            if bias is None:
                causal_txt = torch.ones(T, T, dtype=torch.bool, device=x_bxtxc.device).tril()
                scores = scores.masked_fill(~causal_txt, float("-inf"))
            else:
                scores = scores + bias.to(scores.dtype)
            att_bxhxtxt = scores.softmax(dim=-1)
            y = F.dropout(att_bxhxtxt, dropout_p, self.training) @ v  # (B, H, T, hd)
        elif bias is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:  # a float mask must match the query dtype (bfloat16/float16 under autocast)
            mask = bias.to(q.dtype)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
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
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def init_weights(self, generator: torch.Generator | None, resid_std: float) -> None:
        """Norms 1/0; qkv and fc N(0, 0.02); the residual projections N(0, resid_std) (GPT-2);
        the relative encoding's W_r, u and v N(0, 0.02)."""
        init_layer_norm_(self.ln_1)
        init_linear_(self.attn.qkv, INIT_STD, generator)
        init_linear_(self.attn.proj, resid_std, generator)
        if self.attn.relative:
            # W_r, then the biases u and v: N(0, 0.02), as in Deletang et al.'s code
            init_linear_(self.attn.rel_proj, INIT_STD, generator)
            nn.init.normal_(self.attn.rel_u, 0.0, INIT_STD, generator=generator)
            nn.init.normal_(self.attn.rel_v, 0.0, INIT_STD, generator=generator)
        init_layer_norm_(self.ln_2)
        init_linear_(self.mlp.fc, INIT_STD, generator)
        init_linear_(self.mlp.proj, resid_std, generator)

    def forward(
        self,
        x_bxtxc: Tensor,
        rope_2xtxd: Tensor | None,
        bias: Tensor | None,
        capture: bool,
        rel_pxc: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        attn_out, att_bxhxtxt = self.attn(self.ln_1(x_bxtxc), rope_2xtxd, bias, capture, rel_pxc)
        x_bxtxc = x_bxtxc + attn_out
        x_bxtxc = x_bxtxc + self.mlp(self.ln_2(x_bxtxc))
        return x_bxtxc, att_bxhxtxt


# --------------------------------------------------------------------------- backbones
# A backbone maps token embeddings (B, T, C) to the last layer's hidden states (B, T, C) and,
# with capture, the hidden state after the embedding and after each layer (+ attention maps).

BackboneOutput = tuple[Tensor, list[Tensor] | None, list[Tensor] | None]


class TransformerBackbone(nn.Module):
    """Positional encoding, then pre-LN blocks (causal, or bidirectional when `cfg.causal` is
    false); SDPA, or an explicit path on capture."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.causal = cfg.causal
        self.pos_encoding = cfg.pos_encoding
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.pos_encoding == "learned":
            self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model)
        elif cfg.pos_encoding == "sinusoidal":
            table = sinusoid_table(cfg.max_len, cfg.d_model)
            self.register_buffer("sinusoid_txc", table, persistent=False)
        elif cfg.pos_encoding == "rope":
            table = rope_tables(cfg.max_len, cfg.d_model // cfg.n_heads)
            self.register_buffer("rope_2xtxd", table, persistent=False)
        elif cfg.pos_encoding == "alibi":
            slopes_h = torch.tensor(alibi_slopes(cfg.n_heads))
            self.register_buffer("alibi_slopes_h", slopes_h, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))

    def init_weights(self, generator: torch.Generator | None) -> None:
        """Learned positions N(0, 0.02), then each block (residual projections / sqrt(2L))."""
        if self.pos_encoding == "learned":
            nn.init.normal_(self.pos_embed.weight, 0.0, INIT_STD, generator=generator)
        resid_std = INIT_STD / math.sqrt(2 * self.cfg.n_layers)
        for block in self.blocks:
            block.init_weights(generator, resid_std)

    def summary(self) -> str:
        cfg = self.cfg
        kind = "" if cfg.causal else " encoder"
        return (
            f"{cfg.arch}{kind} d_model={cfg.d_model} n_layers={cfg.n_layers} "
            f"n_heads={cfg.n_heads} d_ff={cfg.d_ff} pos={cfg.pos_encoding}"
        )

    def _positions(self, x_bxtxc: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Absolute positions added to x; or the rope tables; or the ALiBi bias (H, T, T)."""
        n_pos = x_bxtxc.shape[1]  # a shape, so checking it never syncs
        if self.pos_encoding == "learned":
            if n_pos > self.cfg.max_len:
                raise ValueError(
                    f"input length {n_pos} exceeds max_len {self.cfg.max_len} of the learned "
                    "positional encoding; raise model.max_len or use sinusoidal, rope, alibi, "
                    "relative or none"
                )
            return x_bxtxc + self.pos_embed.weight[:n_pos], None, None
        if self.pos_encoding == "sinusoidal":
            table = self.sinusoid_txc
            if n_pos > table.shape[0]:  # longer than max_len: compute the table afresh
                table = sinusoid_table(n_pos, self.cfg.d_model, device=table.device)
            return x_bxtxc + table[:n_pos], None, None
        if self.pos_encoding == "rope":
            rope_2xtxd = self.rope_2xtxd
            if n_pos > rope_2xtxd.shape[1]:
                rope_2xtxd = rope_tables(n_pos, rope_2xtxd.shape[2], device=rope_2xtxd.device)
            return x_bxtxc, rope_2xtxd[:, :n_pos], None
        if self.pos_encoding == "alibi":
            make = alibi_causal_bias if self.causal else alibi_bidirectional_bias
            return x_bxtxc, None, make(self.alibi_slopes_h, n_pos)
        return x_bxtxc, None, None

    def _mask_bias(
        self,
        pos_bias_hxtxt: Tensor | None,
        key_mask_bxt: Tensor | None,
        n_pos: int,
        device: torch.device,
    ) -> Tensor | None:
        """One additive bias holding the mask: None for the plain causal case (SDPA's fused
        is_causal path); otherwise (B or 1, H or 1, T, T) with -inf where a query may not
        look (the future when causal, padding keys when `key_mask_bxt` is given). The
        relative encoding adds its scores to an explicit mask, so it always gets one."""
        explicit = self.pos_encoding == "relative"
        if self.causal and key_mask_bxt is None and not explicit:
            return pos_bias_hxtxt  # ALiBi's causal bias already holds the mask
        bias = torch.zeros(1, 1, n_pos, n_pos, device=device)
        if pos_bias_hxtxt is not None:
            bias = bias + pos_bias_hxtxt.unsqueeze(0)
        if self.causal:
            future_txt = torch.ones(n_pos, n_pos, dtype=torch.bool, device=device).triu(1)
            bias = bias.masked_fill(future_txt, float("-inf"))
        if key_mask_bxt is not None:
            bias = bias.masked_fill(~key_mask_bxt[:, None, None, :], float("-inf"))
        return bias

    def forward(
        self, x_bxtxc: Tensor, capture: bool, key_mask_bxt: Tensor | None = None
    ) -> BackboneOutput:
        """`key_mask_bxt` (bool, True at real positions) keeps padding out of the encoder's
        attention; a causal model needs none (right padding lies in every real position's
        future)."""
        n_pos = x_bxtxc.shape[1]
        x_bxtxc, rope_2xtxd, pos_bias_hxtxt = self._positions(x_bxtxc)
        bias = self._mask_bias(pos_bias_hxtxt, key_mask_bxt, n_pos, x_bxtxc.device)
        rel_pxc = None
        if self.pos_encoding == "relative":
            distances_p = torch.arange(n_pos - 1, -n_pos, -1, device=x_bxtxc.device)
            rel_pxc = sinusoids(distances_p, self.cfg.d_model)
        x_bxtxc = self.drop(x_bxtxc)
        hidden_states = [x_bxtxc] if capture else None
        attentions = [] if capture else None
        for block in self.blocks:
            x_bxtxc, att_bxhxtxt = block(x_bxtxc, rope_2xtxd, bias, capture, rel_pxc)
            if capture:
                attentions.append(att_bxhxtxt)
                hidden_states.append(x_bxtxc)
        return x_bxtxc, hidden_states, attentions


class RecurrentBackbone(nn.Module):
    """Stacked single-layer recurrent cells (order-aware by themselves: no positions)."""

    cell: type[nn.RNNBase]  # nn.LSTM, nn.GRU or nn.RNN (tanh or relu)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.drop = nn.Dropout(cfg.dropout)
        # One single-layer cell per layer so capture can return every layer's output. The list
        # is named after the cell (lstms, grus, rnns): those are the names in checkpoints.
        options = self.cell_options(cfg)
        cells = nn.ModuleList(
            self.cell(cfg.d_model, cfg.d_model, batch_first=True, **options)
            for _ in range(cfg.n_layers)
        )
        self.add_module(self.layers_name(), cells)

    @classmethod
    def cell_options(cls, cfg: ModelConfig) -> dict[str, str]:
        """Keyword arguments of the cell beyond its sizes (none but the RNN's activation)."""
        return {}

    @classmethod
    def layers_name(cls) -> str:
        return cls.cell.__name__.lower() + "s"

    @property
    def layers(self) -> nn.ModuleList:
        return getattr(self, self.layers_name())

    def init_weights(self, generator: torch.Generator | None) -> None:
        """Every weight and bias U(-1/sqrt(C), 1/sqrt(C)), as torch does."""
        for layer in self.layers:
            bound = 1.0 / math.sqrt(layer.hidden_size)
            for param in layer.parameters():
                nn.init.uniform_(param, -bound, bound, generator=generator)

    def summary(self) -> str:
        return f"{self.cfg.arch} d_model={self.cfg.d_model} n_layers={self.cfg.n_layers}"

    def forward(
        self, x_bxtxc: Tensor, capture: bool, key_mask_bxt: Tensor | None = None
    ) -> BackboneOutput:
        """`key_mask_bxt` is unused: a recurrence reads left to right, padding comes last."""
        x_bxtxc = self.drop(x_bxtxc)
        hidden_states = [x_bxtxc] if capture else None
        for i, layer in enumerate(self.layers):
            if i > 0:
                x_bxtxc = self.drop(x_bxtxc)  # dropout between layers, as nn.LSTM does
            if x_bxtxc.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                # CPU autocast sends the cell to oneDNN in bfloat16, which CPUs without bf16
                # support cannot run ("could not create a primitive descriptor"): the
                # recurrence runs in float32 there, the heads stay under autocast.
                with torch.autocast("cpu", enabled=False):
                    x_bxtxc, _ = layer(x_bxtxc.float())
            else:
                x_bxtxc, _ = layer(x_bxtxc)
            if capture:
                hidden_states.append(x_bxtxc)
        return x_bxtxc, hidden_states, None


class LSTMBackbone(RecurrentBackbone):
    cell = nn.LSTM


class GRUBackbone(RecurrentBackbone):
    cell = nn.GRU


class RNNBackbone(RecurrentBackbone):
    cell = nn.RNN  # h_t = act(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), act tanh or relu

    @classmethod
    def cell_options(cls, cfg: ModelConfig) -> dict[str, str]:
        return {"nonlinearity": cfg.rnn_nonlinearity}

    def init_weights(self, generator: torch.Generator | None) -> None:
        """torch's U(-1/sqrt(C), 1/sqrt(C)), or `rnn_init = "haiku"`: hk.Linear's defaults, the
        init of Haiku's VanillaRNN: weights N(0, 1) truncated at +-2, times 1/sqrt(fan-in)
        (no correction for the truncation: sd 0.88/sqrt(fan-in)), biases 0."""
        if self.cfg.rnn_init != "haiku":
            super().init_weights(generator)
            return
        for layer in self.layers:
            for name, param in layer.named_parameters():
                if name.startswith("weight"):  # weight_ih (C, C_in), weight_hh (C, C)
                    nn.init.trunc_normal_(param, 0.0, 1.0, -2.0, 2.0, generator=generator)
                    param.mul_(1.0 / math.sqrt(param.shape[1]))
                else:
                    nn.init.zeros_(param)

    def summary(self) -> str:
        extras = "" if self.cfg.rnn_nonlinearity == "tanh" else f" {self.cfg.rnn_nonlinearity}"
        extras += "" if self.cfg.rnn_init == "torch" else f" init={self.cfg.rnn_init}"
        return f"rnn{extras} d_model={self.cfg.d_model} n_layers={self.cfg.n_layers}"


BACKBONES: dict[str, type[TransformerBackbone | RecurrentBackbone]] = {
    "transformer": TransformerBackbone,
    "lstm": LSTMBackbone,
    "gru": GRUBackbone,
    "rnn": RNNBackbone,
}
