"""Tests for fsmrun.nn.model: causality, padding, capture, embeddings, heads, init, precision."""

from __future__ import annotations

import pydantic
import pytest
import torch

from fsmrun.base.seeding import hash_state_dict, torch_generator
from fsmrun.nn.model import (
    ModelOutput,
    SequenceModel,
    build_model,
)
from fsmrun.schemas.config import ModelConfig

VOCAB, STATES = 7, 5
POS_ENCODINGS = ["learned", "sinusoidal", "rope", "alibi", "none"]
RECURRENT = ["lstm", "gru", "rnn"]
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny(**overrides) -> ModelConfig:
    fields = dict(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=16)
    fields.update(overrides)
    return ModelConfig(**fields)


def make(cfg: ModelConfig, seed: int = 0) -> SequenceModel:
    return build_model(cfg, VOCAB, STATES, torch.Generator().manual_seed(seed)).eval()


def random_ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


ALL_VARIANTS = (
    [tiny(pos_encoding=pos) for pos in POS_ENCODINGS]
    + [tiny(arch=arch) for arch in RECURRENT]
    + [tiny(factorized_rank=3, tie_embeddings=True)]
)
VARIANT_IDS = POS_ENCODINGS + RECURRENT + ["factorized_tied"]


def all_logits(out: ModelOutput) -> list[torch.Tensor]:
    return [out.logits_next, out.logits_class, out.logits_state]


@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_future_tokens_never_change_past_logits(cfg: ModelConfig) -> None:
    model = make(cfg)
    ids_bxt = random_ids(3, 12)
    t = 5
    perturbed_bxt = ids_bxt.clone()
    perturbed_bxt[:, t + 1 :] = (ids_bxt[:, t + 1 :] + 1 + torch.arange(6)) % VOCAB
    with torch.no_grad():
        before, after = model(ids_bxt), model(perturbed_bxt)
    for a, b in zip(all_logits(before), all_logits(after), strict=True):
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # the future does matter


@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_right_padding_leaves_real_positions_unchanged(cfg: ModelConfig) -> None:
    model = make(cfg)
    lengths = [4, 9, 6]
    rows = [random_ids(1, n, seed=10 + n)[0] for n in lengths]
    padded_bxt = torch.zeros(len(rows), max(lengths), dtype=torch.long)  # PAD = 0
    for i, row in enumerate(rows):
        padded_bxt[i, : len(row)] = row
    with torch.no_grad():
        batched = model(padded_bxt)
        for i, row in enumerate(rows):
            alone = model(row[None])
            for a, b in zip(all_logits(batched), all_logits(alone), strict=True):
                torch.testing.assert_close(a[i, : len(row)], b[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_capture_path_matches_fast_path_and_has_the_documented_shapes(pos: str) -> None:
    model = make(tiny(pos_encoding=pos, n_layers=3))
    ids_bxt = random_ids(2, 11)
    with torch.no_grad():
        fast, slow = model(ids_bxt), model(ids_bxt, capture=True)
    assert fast.attentions is None and fast.hidden_states is None
    for a, b in zip(all_logits(fast), all_logits(slow), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert len(slow.attentions) == 3
    assert len(slow.hidden_states) == 4  # embedding output, then one per block
    for att_bxhxtxt in slow.attentions:
        assert att_bxhxtxt.shape == (2, 2, 11, 11)
        torch.testing.assert_close(att_bxhxtxt.sum(-1), torch.ones(2, 2, 11))
        assert att_bxhxtxt.triu(diagonal=1).abs().max() == 0  # no weight on the future
    for h_bxtxc in slow.hidden_states:
        assert h_bxtxc.shape == (2, 11, 16)


@pytest.mark.parametrize("arch", RECURRENT)
def test_recurrent_capture_returns_hidden_states_and_no_attentions(arch: str) -> None:
    model = make(tiny(arch=arch, n_layers=3))
    ids_bxt = random_ids(2, 8)
    with torch.no_grad():
        fast, slow = model(ids_bxt), model(ids_bxt, capture=True)
    torch.testing.assert_close(fast.logits_next, slow.logits_next, rtol=0, atol=1e-6)
    assert slow.attentions is None
    assert [tuple(h.shape) for h in slow.hidden_states] == [(2, 8, 16)] * 4


@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_every_head_has_its_shape(cfg: ModelConfig) -> None:
    out = make(cfg)(random_ids(3, 10))
    assert out.logits_next.shape == (3, 10, VOCAB)
    assert out.logits_class.shape == (3, 10, 2)
    assert out.logits_state.shape == (3, 10, STATES)


def test_factorized_embedding_is_u_times_v_and_l1_u_is_sum_of_abs_u() -> None:
    model = build_model(tiny(factorized_rank=2, d_model=4, n_heads=1), 3, STATES)
    u = torch.tensor([[1.0, -2.0], [0.0, 3.0], [-0.5, 0.0]])
    v = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.5, 1.0, 0.0, 0.0]])
    with torch.no_grad():
        model.token_embed.u.copy_(u)
        model.token_embed.v.copy_(v)
    expected_e = torch.tensor(
        [[0.0, -2.0, 2.0, -1.0], [1.5, 3.0, 0.0, 0.0], [-0.5, 0.0, -1.0, 0.5]]
    )  # U @ V by hand
    torch.testing.assert_close(model.token_embed.matrix(), expected_e)
    ids_bxt = torch.tensor([[2, 0, 1, 1]])
    torch.testing.assert_close(model.token_embed(ids_bxt), expected_e[ids_bxt])
    assert model.l1_u().item() == pytest.approx(1 + 2 + 3 + 0.5)
    assert {n for n, _ in model.named_parameters() if "embed" in n} == {
        "token_embed.u",
        "token_embed.v",
    }


def test_l1_u_is_zero_without_factorization() -> None:
    l1 = make(tiny()).l1_u()
    assert l1.shape == () and l1.item() == 0.0


def test_tied_factorized_head_is_h_times_embedding_transpose() -> None:
    model = make(tiny(factorized_rank=3, tie_embeddings=True))
    assert model.head_next is None
    with torch.no_grad():
        out = model(random_ids(2, 6), capture=True)
        h_bxtxc = model.ln_f(out.hidden_states[-1])
        u, v = model.token_embed.u, model.token_embed.v
        torch.testing.assert_close(out.logits_next, h_bxtxc @ (u @ v).T)


def test_tie_embeddings_shares_the_weight() -> None:
    tied, untied = make(tiny(tie_embeddings=True)), make(tiny(tie_embeddings=False))
    assert tied.head_next.weight is tied.token_embed.weight
    # the untied head has its own V x C weight and V biases
    assert untied.parameter_count() - tied.parameter_count() == VOCAB * 16 + VOCAB
    tied(random_ids(2, 5)).logits_next.sum().backward()
    assert tied.token_embed.weight.grad is not None
    assert tied.token_embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pos", ["sinusoidal", "rope", "alibi", "none"])
def test_unlearned_positions_run_past_max_len_and_extend_the_table(pos: str) -> None:
    model = make(tiny(pos_encoding=pos, max_len=8))
    ids_bxt = random_ids(2, 13)
    with torch.no_grad():
        long_out, short_out = model(ids_bxt), model(ids_bxt[:, :8])
    assert long_out.logits_next.shape == (2, 13, VOCAB)
    assert torch.isfinite(long_out.logits_next).all()
    # positions < max_len agree whether the table came from the cache or was computed afresh
    torch.testing.assert_close(
        long_out.logits_next[:, :8], short_out.logits_next, atol=1e-5, rtol=0
    )


def test_learned_positions_refuse_inputs_longer_than_max_len() -> None:
    model = make(tiny(pos_encoding="learned", max_len=8))
    assert model(random_ids(1, 8)).logits_next.shape == (1, 8, VOCAB)
    with pytest.raises(ValueError, match=r"input length 9 exceeds max_len 8"):
        model(random_ids(1, 9))


@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_init_depends_only_on_the_generator(cfg: ModelConfig) -> None:
    torch.manual_seed(123)
    a = make(cfg, seed=7).state_dict()
    torch.manual_seed(456)  # the global RNG must not matter
    b = make(cfg, seed=7).state_dict()
    c = make(cfg, seed=8).state_dict()
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_building_with_a_generator_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make(tiny(arch="lstm"))
    make(tiny())
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_init_follows_the_documented_scheme() -> None:
    model = make(ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=512))
    block = model.backbone.blocks[0]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    resid_std = 0.02 / (2 * 4) ** 0.5
    assert block.mlp.proj.weight.std().item() == pytest.approx(resid_std, rel=0.05)
    assert block.attn.proj.bias.abs().max() == 0
    assert torch.equal(block.ln_1.weight, torch.ones(128))
    factorized = build_model(
        ModelConfig(d_model=128, factorized_rank=8), 64, STATES, torch.Generator().manual_seed(0)
    )
    assert factorized.token_embed.matrix().std().item() == pytest.approx(0.02, rel=0.15)


def test_parameter_count_and_summary_of_a_tiny_lstm() -> None:
    cfg = ModelConfig(arch="lstm", d_model=4, n_layers=1, n_heads=1)
    model = build_model(cfg, vocab_size=5, num_states=3)
    # embed 5*4 + LSTM 4*4*(4+4) + 2*16 + LayerNorm 2*4 + heads (4*5+5) + (4*2+2) + (4*3+3)
    assert model.parameter_count() == 20 + 128 + 32 + 8 + 25 + 10 + 15
    summary = model.summary()
    assert "\n" not in summary
    assert summary.startswith("lstm d_model=4 n_layers=1")
    assert summary.endswith("params=238")


def test_norm_weights_and_biases_are_1d_and_matrices_2d() -> None:
    for name, param in make(tiny()).named_parameters():
        expected_dim = 1 if name.endswith("bias") or ".ln_" in name or "ln_f" in name else 2
        assert param.dim() == expected_dim, name


@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_bfloat16_autocast_on_cpu_gives_finite_outputs_and_grads(cfg: ModelConfig) -> None:
    model = make(cfg).train()
    ids_bxt = random_ids(2, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids_bxt)
        captured = model(ids_bxt, capture=True)
    for logits in all_logits(out) + all_logits(captured):
        assert torch.isfinite(logits).all()
    out.logits_next.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_config_errors_name_the_fields() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"d_model \(30\).*n_heads \(4\)"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(pydantic.ValidationError, match="rope needs an even head dimension"):
        ModelConfig(d_model=12, n_heads=4, pos_encoding="rope")


def test_recurrent_cells_are_lstm_gru_and_tanh_rnn_and_count_their_parameters() -> None:
    # embed 5*4 + cell gates*(4*(4+4) + 2*4) + LayerNorm 2*4 + heads (4*5+5) + (4*2+2) + (4*3+3)
    expected = {"lstm": (torch.nn.LSTM, 4), "gru": (torch.nn.GRU, 3), "rnn": (torch.nn.RNN, 1)}
    for arch, (cell, gates) in expected.items():
        model = build_model(ModelConfig(arch=arch, d_model=4, n_layers=1, n_heads=1), 5, 3)
        layer = model.backbone.layers[0]
        assert type(layer) is cell
        assert model.parameter_count() == 20 + gates * 40 + 8 + 25 + 10 + 15
        assert model.summary() == (
            f"{arch} d_model=4 n_layers=1 vocab=5 states=3 params={model.parameter_count()}"
        )
    assert layer.nonlinearity == "tanh"


def test_relu_rnn_steps_by_hand_and_draws_the_tanh_cells_initial_weights() -> None:
    relu_cfg = ModelConfig(arch="rnn", d_model=4, n_layers=1, rnn_nonlinearity="relu")
    relu, tanh = make(relu_cfg), make(ModelConfig(arch="rnn", d_model=4, n_layers=1))
    layer = relu.backbone.layers[0]
    assert layer.nonlinearity == "relu" and tanh.backbone.layers[0].nonlinearity == "tanh"
    assert hash_state_dict(relu) == hash_state_dict(tanh)  # same draws, same order
    assert relu.summary().startswith("rnn relu d_model=4 n_layers=1 ")
    x_bxtxc = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out_bxtxc = relu.backbone(x_bxtxc, capture=False)[0]
        h_bxc = torch.zeros(2, 4)
        for t in range(5):  # h_t = max(0, W_ih x_t + b_ih + W_hh h_(t-1) + b_hh)
            pre = x_bxtxc[:, t] @ layer.weight_ih_l0.T + layer.bias_ih_l0
            h_bxc = torch.relu(pre + h_bxc @ layer.weight_hh_l0.T + layer.bias_hh_l0)
            torch.testing.assert_close(out_bxtxc[:, t], h_bxc)
        assert (out_bxtxc == 0).any() and not torch.allclose(
            out_bxtxc, tanh.backbone(x_bxtxc, capture=False)[0]
        )


def test_haiku_rnn_init_draws_truncated_normal_weights_and_zero_biases() -> None:
    cfg = ModelConfig(arch="rnn", d_model=256, n_layers=1, rnn_init="haiku")
    haiku, torch_init = make(cfg), make(cfg.model_copy(update={"rnn_init": "torch"}))
    layer, default = haiku.backbone.layers[0], torch_init.backbone.layers[0]
    for name in ("weight_ih_l0", "weight_hh_l0"):  # fan-in 256: sd 0.8796 / 16, |w| <= 2 / 16
        w = getattr(layer, name).detach() * 16
        assert w.abs().max() <= 2.0 and abs(w.std().item() - 0.8796) < 0.01, name
        assert getattr(default, name).detach().abs().max() <= 1 / 16  # torch's U(-1/16, 1/16)
    assert not layer.bias_ih_l0.any() and not layer.bias_hh_l0.any()
    assert default.bias_ih_l0.abs().min() > 0
    # Only the cell's draws change: the embedding before it is the same.
    torch.testing.assert_close(haiku.token_embed.weight, torch_init.token_embed.weight)
    assert haiku.summary().startswith("rnn init=haiku d_model=256 ")


def test_rnn_cell_options_are_refused_for_other_cells() -> None:
    ModelConfig(arch="rnn", rnn_nonlinearity="relu", rnn_init="haiku")
    for arch in ("lstm", "gru", "transformer"):
        with pytest.raises(pydantic.ValidationError, match=f"arch = rnn only.*arch is {arch}"):
            ModelConfig(arch=arch, rnn_nonlinearity="relu")
        with pytest.raises(pydantic.ValidationError, match="rnn_init.*leave it at torch"):
            ModelConfig(arch=arch, rnn_init="haiku")


def test_alibi_attention_without_query_key_signal_is_softmax_of_the_bias() -> None:
    model = make(tiny(pos_encoding="alibi", n_layers=1))  # 2 heads: slopes 1/16 and 1/256
    with torch.no_grad():
        model.backbone.blocks[0].attn.qkv.weight[:32].zero_()  # q and k rows
        model.backbone.blocks[0].attn.qkv.bias[:32].zero_()
        att_hxtxt = model(random_ids(1, 4), capture=True).attentions[0][0]
    for head, slope in enumerate([2.0**-4, 2.0**-8]):
        w = torch.exp(torch.tensor([-2 * slope, -slope, 0.0]))  # row 2 reads positions 0, 1, 2
        torch.testing.assert_close(att_hxtxt[head, 2, :3], w / w.sum())


def test_alibi_adds_no_position_parameters_and_draws_nothing_at_init() -> None:
    alibi, none = make(tiny(pos_encoding="alibi")), make(tiny(pos_encoding="none"))
    assert alibi.state_dict().keys() == none.state_dict().keys()
    assert hash_state_dict(alibi) == hash_state_dict(none)


def test_default_init_is_pinned_to_the_weights_of_earlier_runs() -> None:
    # Computed before the backbones were split out; a change here breaks resuming old runs.
    pinned = {
        "transformer": "9fa999e88967400faa6589b33f3447f3b503c08cde8b4ab425be6539385e47a8",
        "lstm": "37bcad64c63d544e9ac720fb142e876d4ec20bd994a05f65da321daa5d6794f3",
    }
    for arch, expected in pinned.items():
        model = build_model(ModelConfig(arch=arch), 5, 3, generator=torch_generator(0, "init"))
        assert hash_state_dict(model) == expected, arch


def test_state_dict_names_have_no_backbone_prefix_and_load_back() -> None:
    source, target = make(tiny(pos_encoding="learned"), seed=1), make(tiny(pos_encoding="learned"))
    keys = list(source.state_dict())
    assert keys[:3] == ["token_embed.weight", "pos_embed.weight", "blocks.0.ln_1.weight"]
    assert "backbone.blocks.0.ln_1.weight" in dict(source.named_parameters())
    target.load_state_dict(source.state_dict())
    assert hash_state_dict(target) == hash_state_dict(source)
    assert "lstms.0.weight_ih_l0" in make(tiny(arch="lstm")).state_dict()
    assert "grus.0.weight_ih_l0" in make(tiny(arch="gru")).state_dict()


@pytest.mark.parametrize("arch", ["transformer", "gru"])
def test_k_way_class_head_and_legal_next_head_have_their_shapes(arch: str) -> None:
    cfg = tiny(arch=arch)
    model = build_model(cfg, VOCAB, STATES, num_classes=5, legal_next=True).eval()
    out = model(random_ids(3, 6), capture=True)
    assert out.logits_class.shape == (3, 6, 5)
    assert out.legal_next_logits_bxtxv.shape == (3, 6, VOCAB)
    assert make(cfg)(random_ids(3, 6)).legal_next_logits_bxtxv is None
    assert "classes=5 legal_next" in model.summary()


def test_extra_heads_leave_every_default_weight_as_it_was() -> None:
    default = make(tiny()).state_dict()
    extended = build_model(tiny(), VOCAB, STATES, torch.Generator().manual_seed(0), legal_next=True)
    extra = set(extended.state_dict()) - set(default)
    assert extra == {"head_legal.weight", "head_legal.bias"}
    for key, value in default.items():
        torch.testing.assert_close(extended.state_dict()[key], value, rtol=0, atol=0)
    explicit = build_model(tiny(), VOCAB, STATES, torch.Generator().manual_seed(0), num_classes=2)
    assert hash_state_dict(explicit) == hash_state_dict(make(tiny()))


def test_head_and_position_checks_apply_to_the_transformer_only() -> None:
    ModelConfig(arch="gru", d_model=30, n_heads=4)
    ModelConfig(arch="rnn", d_model=12, n_heads=4, pos_encoding="rope")
    with pytest.raises(pydantic.ValidationError, match=r"d_model \(30\).*n_heads \(4\)"):
        ModelConfig(arch="transformer", d_model=30, n_heads=4)


# --------------------------------------------------------------------------- CUDA


@requires_cuda
@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_cuda_float32_fast_path_matches_capture_path_and_cpu(cfg: ModelConfig) -> None:
    cpu_model = make(cfg)
    model = make(cfg).cuda()
    ids_bxt = random_ids(3, 12)
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # true float32 matmuls for a 1e-5 check
    try:
        with torch.no_grad():
            fast, slow = model(ids_bxt.cuda()), model(ids_bxt.cuda(), capture=True)
            on_cpu = cpu_model(ids_bxt)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    for a, b, c in zip(all_logits(fast), all_logits(slow), all_logits(on_cpu), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.cpu(), c, rtol=1e-4, atol=1e-4)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", ALL_VARIANTS, ids=VARIANT_IDS)
def test_cuda_forward_backward_under_autocast_is_finite(
    cfg: ModelConfig, dtype: torch.dtype
) -> None:
    model = make(cfg.model_copy(update={"dropout": 0.1})).cuda().train()
    ids_bxt = random_ids(4, 12).cuda()
    for capture in (False, True):
        model.zero_grad()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            out = model(ids_bxt, capture=capture)
            loss = sum(logits.float().logsumexp(-1).mean() for logits in all_logits(out))
        loss.backward()
        assert torch.isfinite(loss)
        for name, param in model.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


@requires_cuda
@pytest.mark.parametrize("cfg", ALL_VARIANTS[: len(POS_ENCODINGS)], ids=POS_ENCODINGS)
def test_cuda_transformer_forward_never_syncs_with_the_host(cfg: ModelConfig) -> None:
    model = make(cfg).cuda().train()
    ids_bxt = random_ids(4, 12).cuda()
    model(ids_bxt)  # warm-up: lazy initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(ids_bxt)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.logits_next.shape == (4, 12, VOCAB)
