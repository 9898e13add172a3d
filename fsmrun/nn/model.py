"""The sequence model: one backbone (causal transformer or encoder, LSTM, GRU or RNN) under
shared heads.

Heads read the final hidden state at every position: next token (V), class (K: prefix accepted,
or the output class), DFA state (S) and, optionally, the set of legal next tokens (V, multi-label).
The non-causal encoder (`ModelConfig.causal = False`) reads a learned query token appended after
each string and puts what it reads there at t = n, where a causal model has the whole string.
Shapes: B batch, T time, C = d_model, H heads, V vocab, S states, K classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fsmrun.data.encoding import PAD
from fsmrun.nn.backbones import (
    BACKBONES,
    INIT_STD,
    init_layer_norm_,
    init_linear_,
)
from fsmrun.schemas.config import ModelConfig

BACKBONE_PREFIX = "backbone."


@dataclass
class ModelOutput:
    """Logits of the heads and, with `capture=True`, attention maps and hidden states."""

    logits_next: Tensor  # (B, T, V)
    logits_class: Tensor  # (B, T, K)
    logits_state: Tensor  # (B, T, S)
    attentions: list[Tensor] | None = None  # one (B, H, T, T) per layer; transformer only
    hidden_states: list[Tensor] | None = None  # (B, T, C): embedding output, then each layer
    legal_next_logits_bxtxv: Tensor | None = None  # multi-label; None without that head


# --------------------------------------------------------------------------- token embedding


class TokenEmbedding(nn.Module):
    """Plain lookup table, or the factorized E = U @ V (U: V x rank, V: rank x C)."""

    def __init__(
        self, vocab_size: int, d_model: int, rank: int | None, std: float = INIT_STD
    ) -> None:
        super().__init__()
        self.rank = rank
        self.std = std
        if rank is None:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        else:
            self.u = nn.Parameter(torch.empty(vocab_size, rank))
            self.v = nn.Parameter(torch.empty(rank, d_model))

    def init_weights(self, generator: torch.Generator | None) -> None:
        """E ~ N(0, std); factorized: U and V each N(0, sqrt(std) * rank^-1/4) (E: std).
        std is `ModelConfig.embed_init_std`, 0.02 by default."""
        if self.rank is None:
            nn.init.normal_(self.weight, 0.0, self.std, generator=generator)
        else:
            factor_std = math.sqrt(self.std) * self.rank**-0.25
            nn.init.normal_(self.u, 0.0, factor_std, generator=generator)
            nn.init.normal_(self.v, 0.0, factor_std, generator=generator)

    def matrix(self) -> Tensor:
        """The (V, C) embedding matrix E."""
        return self.weight if self.rank is None else self.u @ self.v

    def forward(self, input_ids_bxt: Tensor) -> Tensor:
        if self.rank is None:
            return F.embedding(input_ids_bxt, self.weight)  # (B, T, C)
        return F.embedding(input_ids_bxt, self.u) @ self.v  # (B, T, rank) @ (rank, C)


# --------------------------------------------------------------------------- the model


def _unprefix_backbone(module: nn.Module, state_dict: dict, prefix: str, _meta: dict) -> None:
    """state_dict post-hook: `backbone.blocks.0...` -> `blocks.0...` (order kept)."""
    inner = prefix + BACKBONE_PREFIX
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        flat = prefix + key[len(inner) :] if key.startswith(inner) else key
        state_dict[flat] = value


def _prefix_backbone(module: SequenceModel, state_dict: dict, prefix: str, *_args) -> None:
    """load_state_dict pre-hook: the inverse of `_unprefix_backbone` for the backbone's keys."""
    for name in list(module.backbone.state_dict()):
        if prefix + name in state_dict:
            state_dict[prefix + BACKBONE_PREFIX + name] = state_dict.pop(prefix + name)


class SequenceModel(nn.Module):
    """Token embedding -> backbone -> final LayerNorm -> heads, whatever the architecture.

    Checkpoints and init hashes name the backbone's tensors without the `backbone.` prefix
    (`blocks.0.attn.qkv.weight`, `lstms.0.weight_ih_l0`), as before backbones were split out,
    so earlier runs still load and keep their init hashes.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        vocab_size: int,
        num_states: int,
        *,
        num_classes: int = 2,
        legal_next: bool = False,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_states = num_states
        self.num_classes = num_classes
        # Registration order = parameter order (optimizer state) = init order: keep it.
        self.token_embed = TokenEmbedding(
            vocab_size, cfg.d_model, cfg.factorized_rank, cfg.embed_init_std
        )
        self.backbone = BACKBONES[cfg.arch](cfg)
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.head_next = None
        if not cfg.tie_embeddings:
            self.head_next = nn.Linear(cfg.d_model, vocab_size, bias=cfg.bias)
        elif cfg.factorized_rank is None:
            # Shared Parameter: the head's weight *is* the embedding table.
            self.head_next = nn.Linear(cfg.d_model, vocab_size, bias=False)
            self.head_next.weight = self.token_embed.weight
        # else: tied and factorized, logits = h @ (U @ V)^T computed in forward.
        self.head_class = nn.Linear(cfg.d_model, num_classes, bias=cfg.bias)
        self.head_state = nn.Linear(cfg.d_model, num_states, bias=cfg.bias)
        self.head_legal = nn.Linear(cfg.d_model, vocab_size, bias=cfg.bias) if legal_next else None
        self.encoder = cfg.arch == "transformer" and not cfg.causal
        if self.encoder:  # the answer is read at this token, appended after the input
            self.query = nn.Parameter(torch.empty(cfg.d_model))
        self.register_state_dict_post_hook(_unprefix_backbone)
        self.register_load_state_dict_pre_hook(_prefix_backbone)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter from `generator` (None: torch's global RNG).

        Embedding, then the backbone (its own scheme), then the final norm (1, 0) and the
        heads (N(0, 0.02), biases 0), always in this order, so the draws are reproducible.
        A tied next-token head is the embedding table and draws nothing of its own.
        """
        self.token_embed.init_weights(generator)
        self.backbone.init_weights(generator)
        init_layer_norm_(self.ln_f)
        if self.head_next is not None and not self.cfg.tie_embeddings:
            init_linear_(self.head_next, INIT_STD, generator)
        for head in (self.head_class, self.head_state, self.head_legal):
            if head is not None:
                init_linear_(head, INIT_STD, generator)
        if self.encoder:
            nn.init.normal_(self.query, 0.0, INIT_STD, generator=generator)

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
        parts = [self.backbone.summary()]
        if self.cfg.factorized_rank is not None:
            parts.append(f"rank={self.cfg.factorized_rank}")
        if self.cfg.tie_embeddings:
            parts.append("tied")
        parts += [f"vocab={self.vocab_size}", f"states={self.num_states}"]
        if self.num_classes != 2:
            parts.append(f"classes={self.num_classes}")
        if self.head_legal is not None:
            parts.append("legal_next")
        parts.append(f"params={self.parameter_count():,}")
        return " ".join(parts)

    def forward(self, input_ids_bxt: Tensor, capture: bool = False) -> ModelOutput:
        """Logits at every position; `capture` also returns attention maps and hidden states.

        Causal at every position, so right padding never changes outputs at real positions.
        The encoder masks padding out of attention instead; its outputs at t < n have seen
        the whole string (only t = n, the query's reading, carries a defined answer), and its
        captured maps and hidden states have T + 1 positions (the query at n + 1).
        """
        if self.encoder:
            x_bxtxc, hidden_states, attentions = self._encode(input_ids_bxt, capture)
        else:
            embedded_bxtxc = self.token_embed(input_ids_bxt)
            x_bxtxc, hidden_states, attentions = self.backbone(embedded_bxtxc, capture)
        h_bxtxc = self.ln_f(x_bxtxc)
        if self.head_next is not None:
            logits_next = self.head_next(h_bxtxc)  # (B, T, V)
        else:
            logits_next = F.linear(h_bxtxc, self.token_embed.matrix())  # h @ (U @ V)^T
        return ModelOutput(
            logits_next=logits_next,
            logits_class=self.head_class(h_bxtxc),  # (B, T, K)
            logits_state=self.head_state(h_bxtxc),  # (B, T, S)
            attentions=attentions,
            hidden_states=hidden_states,
            legal_next_logits_bxtxv=None if self.head_legal is None else self.head_legal(h_bxtxc),
        )

    def _encode(
        self, input_ids_bxt: Tensor, capture: bool
    ) -> tuple[Tensor, list[Tensor] | None, list[Tensor] | None]:
        """The encoder over [BOS s1..sn QUERY PAD...]: bidirectional attention among the real
        positions and the query, whose output replaces position n's (shape stays (B, T, C))."""
        B, T = input_ids_bxt.shape
        lengths_b = (input_ids_bxt != PAD).sum(dim=1) - 1  # from the ids: no host sync
        embedded_bxtxc = self.token_embed(input_ids_bxt)
        x_bxtxc = torch.cat([embedded_bxtxc, embedded_bxtxc.new_zeros(B, 1, self.cfg.d_model)], 1)
        positions_t = torch.arange(T + 1, device=input_ids_bxt.device)
        query_at_bxt = positions_t[None, :] == (lengths_b + 1)[:, None]
        x_bxtxc = torch.where(query_at_bxt[..., None], self.query.to(x_bxtxc.dtype), x_bxtxc)
        key_mask_bxt = positions_t[None, :] <= (lengths_b + 1)[:, None]
        out_bxtxc, hidden_states, attentions = self.backbone(x_bxtxc, capture, key_mask_bxt)
        read_bx1xc = out_bxtxc.gather(
            1, (lengths_b + 1).view(B, 1, 1).expand(B, 1, out_bxtxc.shape[-1])
        )
        final_bxt = positions_t[None, :T] == lengths_b[:, None]
        return (
            torch.where(final_bxt[..., None], read_bx1xc, out_bxtxc[:, :T]),
            hidden_states,
            attentions,
        )


def build_model(
    cfg: ModelConfig,
    vocab_size: int,
    num_states: int,
    generator: torch.Generator | None = None,
    *,
    num_classes: int = 2,
    legal_next: bool = False,
) -> SequenceModel:
    """A `SequenceModel` on the CPU, initialised from `generator` (None: the global RNG).

    `num_classes` sizes the class head (2: membership); `legal_next` adds the legal-next-set
    head. Building never advances torch's global RNG when a generator is given: the modules'
    default initialisation runs inside a forked RNG and is then overwritten.
    """
    with torch.random.fork_rng(devices=[]):
        model = SequenceModel(
            cfg, vocab_size, num_states, num_classes=num_classes, legal_next=legal_next
        )
    model.init_weights(generator)
    return model
