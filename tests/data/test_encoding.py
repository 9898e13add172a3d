"""Tests for fsmrun.data.encoding: vocabulary, hand-computed targets and masks, batching."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from fsmrun.data.batching import (
    batch_fingerprint,
    batch_order_hash,
    epoch_batches,
    eval_batches,
    iter_batches,
    steps_per_epoch,
)
from fsmrun.data.encoding import BOS, EOS, PAD, Batch, Vocab, encode_split, legal_next_table
from fsmrun.lang.fsm import DFA

T, F = True, False


def parity_dfa() -> DFA:
    """Even number of a's over {a, b}: state 0 even (accepting), 1 odd."""
    return DFA("ab", [[1, 0], [0, 1]], [T, F])


def ab_star_dfa() -> DFA:
    """(ab)* over {a, b}: 0 start/accepting, 1 after 'a', 2 dead."""
    return DFA("ab", [[1, 2], [2, 0], [2, 2]], [T, F, F])


def random_strings(rng: np.random.Generator, count: int, max_len: int) -> list[str]:
    lengths = rng.integers(0, max_len + 1, size=count)
    return ["".join(rng.choice(["a", "b"], size=n)) for n in lengths]


def assert_batch_equal(a: Batch, b: Batch) -> None:
    for name in Batch.__dataclass_fields__:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_vocab_puts_specials_first_then_symbols_in_order():
    vocab = Vocab("ab")
    assert (PAD, BOS, EOS) == (0, 1, 2)
    assert vocab.size == 5
    assert vocab.symbols == ("a", "b")
    assert vocab.tokens == ("<pad>", "<bos>", "<eos>", "a", "b")
    assert vocab.encode("bba") == [4, 4, 3]
    assert vocab.encode("") == []


def test_decode_inverts_encode_and_skips_specials():
    vocab = Vocab("01x")
    for s in ["", "0", "x10", "0011xx10"]:
        assert vocab.decode(vocab.encode(s)) == s
    assert vocab.decode([BOS, 3, 5, EOS, PAD, PAD]) == "0x"
    assert vocab.decode(torch.tensor([BOS, 4, 4])) == "11"


def test_symbols_outside_the_alphabet_are_rejected():
    vocab = Vocab("ab")
    with pytest.raises(ValueError, match="'c'"):
        vocab.encode("abc")
    with pytest.raises(ValueError, match="'c'"):
        encode_split("train", ["ab", "ca"], None, parity_dfa(), vocab, "cpu")
    with pytest.raises(ValueError, match="does not match"):
        encode_split("train", ["ab"], None, parity_dfa(), Vocab("ba"), "cpu")


def test_parity_split_has_hand_computed_tensors():
    split = encode_split("train", ["ab", "", "aba"], [0, 1, 1], parity_dfa(), Vocab("ab"), "cpu")
    assert split.name == "train" and split.num_strings == 3 and split.max_length == 3
    expected = {
        "input_ids_nxt": [[1, 3, 4, 0], [1, 0, 0, 0], [1, 3, 4, 3]],
        "target_next_nxt": [[3, 4, 2, 0], [2, 0, 0, 0], [3, 4, 3, 2]],
        "target_class_nxt": [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]],
        "target_state_nxt": [[0, 1, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0]],
        "lengths_n": [2, 0, 3],
        "labels_n": [0, 1, 1],
    }
    for name, values in expected.items():
        tensor = getattr(split, name)
        assert tensor.dtype == torch.long, name
        assert tensor.tolist() == values, name
    assert split.loss_mask_nxt.dtype == torch.bool
    assert split.loss_mask_nxt.tolist() == [[T, T, T, F], [T, F, F, F], [T, T, T, T]]
    assert split.lengths_np.tolist() == [2, 0, 3]
    assert split.labels_np.tolist() == [0, 1, 1]


def test_dead_state_split_has_hand_computed_tensors():
    split = encode_split("val", ["abb", "ab", "b"], [0, 1, 0], ab_star_dfa(), Vocab("ab"), "cpu")
    assert split.input_ids_nxt.tolist() == [[1, 3, 4, 4], [1, 3, 4, 0], [1, 4, 0, 0]]
    assert split.target_next_nxt.tolist() == [[3, 4, 4, 2], [3, 4, 2, 0], [4, 2, 0, 0]]
    assert split.target_class_nxt.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 0, 0]]
    assert split.target_state_nxt.tolist() == [[0, 1, 0, 2], [0, 1, 0, 0], [0, 2, 0, 0]]
    assert split.loss_mask_nxt.tolist() == [[T, T, T, T], [T, T, T, F], [T, T, F, F]]
    assert split.lengths_n.tolist() == [3, 2, 1]
    assert split.labels_n.tolist() == [0, 1, 0]


def test_empty_string_is_one_bos_position_with_eos_target():
    split = encode_split("train", [""], [1], ab_star_dfa(), Vocab("ab"), "cpu")
    batch = split.batch(np.array([0]))
    assert batch.input_ids_bxt.tolist() == [[BOS]]
    assert batch.target_next_bxt.tolist() == [[EOS]]
    assert batch.target_class_bxt.tolist() == [[1]]
    assert batch.target_state_bxt.tolist() == [[0]]
    assert batch.loss_mask_bxt.tolist() == [[True]]
    assert batch.lengths_b.tolist() == [0] and batch.labels_b.tolist() == [1]


def test_pad_positions_carry_no_target_and_no_mask():
    strings = random_strings(np.random.default_rng(0), 200, 12)
    split = encode_split("train", strings, None, ab_star_dfa(), Vocab("ab"), "cpu")
    pad_nxt = ~split.loss_mask_nxt
    assert pad_nxt.any()
    for name in ["input_ids_nxt", "target_next_nxt", "target_class_nxt", "target_state_nxt"]:
        assert (getattr(split, name)[pad_nxt] == 0).all(), name
    assert (split.loss_mask_nxt.sum(1) == split.lengths_n + 1).all()
    # Real positions never hold PAD, in inputs or next-token targets.
    assert (split.input_ids_nxt[~pad_nxt] != PAD).all()
    assert (split.target_next_nxt[~pad_nxt] != PAD).all()


def test_vectorised_encoding_agrees_with_running_the_dfa_per_string():
    dfa, vocab = ab_star_dfa(), Vocab("ab")
    strings = random_strings(np.random.default_rng(1), 300, 10) + ["abab", "ababab"]
    split = encode_split("test", strings, None, dfa, vocab, "cpu")
    for i, s in enumerate(strings):
        n = len(s)
        states = dfa.run(s)
        assert split.input_ids_nxt[i, : n + 1].tolist() == [BOS, *vocab.encode(s)]
        assert split.target_next_nxt[i, : n + 1].tolist() == [*vocab.encode(s), EOS]
        assert split.target_state_nxt[i, : n + 1].tolist() == states
        assert split.target_class_nxt[i, : n + 1].tolist() == [
            int(dfa.accepting[q]) for q in states
        ]
        assert split.labels_np[i] == int(dfa.accepts(s))
        assert vocab.decode(split.input_ids_nxt[i]) == s


def test_labels_that_disagree_with_the_dfa_are_rejected():
    with pytest.raises(ValueError, match="'ab' labelled 0"):
        encode_split("train", ["", "ab"], [1, 0], ab_star_dfa(), Vocab("ab"), "cpu")
    with pytest.raises(ValueError, match="2 labels for 3 strings"):
        encode_split("train", ["", "ab", "b"], [1, 1], ab_star_dfa(), Vocab("ab"), "cpu")


def test_steps_per_epoch_rounds_up():
    assert steps_per_epoch(10, 4) == 3
    assert steps_per_epoch(8, 4) == 2
    assert steps_per_epoch(0, 4) == 0
    with pytest.raises(ValueError):
        steps_per_epoch(8, 0)


def test_epoch_batches_is_a_pure_function_of_seed_and_epoch():
    first = epoch_batches(10, 4, seed=7, epoch=0)
    again = epoch_batches(10, 4, seed=7, epoch=0)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [len(b) for b in first] == [4, 4, 2]  # no drop_last: the last batch is short
    assert sorted(np.concatenate(first).tolist()) == list(range(10))
    assert all(b.dtype == np.int64 for b in first)
    other_epoch = epoch_batches(10, 4, seed=7, epoch=1)
    other_seed = epoch_batches(10, 4, seed=8, epoch=0)
    assert batch_order_hash(other_epoch) != batch_order_hash(first)
    assert batch_order_hash(other_seed) != batch_order_hash(first)
    assert sorted(np.concatenate(other_epoch).tolist()) == list(range(10))


def test_iter_batches_from_a_start_step_is_the_tail_of_the_epoch():
    strings = random_strings(np.random.default_rng(2), 37, 9)
    split = encode_split("train", strings, None, parity_dfa(), Vocab("ab"), "cpu")
    for bucket in (False, True):
        full = list(iter_batches(split, 5, seed=3, epoch=2, bucket_by_length=bucket))
        assert len(full) == steps_per_epoch(37, 5) == 8
        order = epoch_batches(37, 5, 3, 2, lengths_np=split.lengths_np, bucket_by_length=bucket)
        for batch, index in zip(full, order, strict=True):
            assert_batch_equal(batch, split.batch(index))
        for k in (0, 1, 5, 7, 8):
            tail = list(iter_batches(split, 5, 3, 2, start_step=k, bucket_by_length=bucket))
            assert len(tail) == 8 - k
            for a, b in zip(tail, full[k:], strict=True):
                assert_batch_equal(a, b)
    with pytest.raises(ValueError, match="start_step"):
        list(iter_batches(split, 5, 3, 2, start_step=9))


def test_batch_is_trimmed_to_longest_string_plus_one():
    split = encode_split("train", ["ab", "", "aba"], None, parity_dfa(), Vocab("ab"), "cpu")
    only_empty = split.batch(np.array([1]))
    assert only_empty.input_ids_bxt.shape == (1, 1)
    pair = split.batch(np.array([1, 0]))
    assert pair.input_ids_bxt.tolist() == [[1, 0, 0], [1, 3, 4]]
    assert pair.target_next_bxt.tolist() == [[2, 0, 0], [3, 4, 2]]
    assert pair.target_class_bxt.tolist() == [[1, 0, 0], [1, 0, 0]]
    assert pair.target_state_bxt.tolist() == [[0, 0, 0], [0, 1, 1]]
    assert pair.loss_mask_bxt.tolist() == [[T, F, F], [T, T, T]]
    assert pair.lengths_b.tolist() == [0, 2] and pair.labels_b.tolist() == [1, 0]
    assert split.batch(np.array([2, 1])).input_ids_bxt.shape == (2, 4)


def test_length_bucketing_covers_every_index_once_and_cuts_padding():
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 60, size=1000)
    kwargs = dict(lengths_np=lengths)
    plain = epoch_batches(1000, 8, 5, 0, **kwargs)
    bucketed = epoch_batches(1000, 8, 5, 0, bucket_by_length=True, **kwargs)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(1000))
    assert len(bucketed) == steps_per_epoch(1000, 8)
    assert sorted(len(b) for b in bucketed) == sorted(len(b) for b in plain)
    again = epoch_batches(1000, 8, 5, 0, bucket_by_length=True, **kwargs)
    assert batch_order_hash(again) == batch_order_hash(bucketed)
    next_epoch = epoch_batches(1000, 8, 5, 1, bucket_by_length=True, **kwargs)
    assert batch_order_hash(next_epoch) != batch_order_hash(bucketed)

    def pad_positions(batches: list[np.ndarray]) -> int:
        return sum(int(len(b) * lengths[b].max() - lengths[b].sum()) for b in batches)

    # Here: 23,450 pad positions in random batches, 618 in bucketed ones.
    assert pad_positions(bucketed) < 0.05 * pad_positions(plain)
    with pytest.raises(ValueError, match="lengths_np"):
        epoch_batches(1000, 8, 5, 0, bucket_by_length=True)


def test_eval_batches_cover_the_split_sorted_by_length():
    strings = ["aaaa", "", "ab", "b", "abab", "aa", "bbb"]
    split = encode_split("val", strings, None, parity_dfa(), Vocab("ab"), "cpu")
    batches = list(eval_batches(split, 3))
    assert [b.lengths_b.tolist() for b in batches] == [[0, 1, 2], [2, 3, 4], [4]]
    decoded = [Vocab("ab").decode(row) for b in batches for row in b.input_ids_bxt]
    assert decoded == ["", "b", "ab", "aa", "bbb", "aaaa", "abab"]
    assert [b.input_ids_bxt.shape[1] for b in batches] == [3, 5, 5]


def test_fingerprints_are_sha256_and_see_batch_boundaries():
    index = np.array([3, 1, 2])
    assert batch_fingerprint(index) == batch_fingerprint(index.astype(np.int32))
    assert batch_fingerprint(index) != batch_fingerprint(np.array([1, 2, 3]))
    assert len(batch_fingerprint(index)) == 64
    split_a = [np.array([0, 1]), np.array([2])]
    split_b = [np.array([0]), np.array([1, 2])]
    assert batch_order_hash(split_a) != batch_order_hash(split_b)
    assert batch_order_hash(split_a) == batch_order_hash([np.array([0, 1]), np.array([2])])


def test_legal_next_table_for_ab_star():
    legal_sxv = legal_next_table(ab_star_dfa(), Vocab("ab"))
    assert legal_sxv.dtype == torch.bool and legal_sxv.device.type == "cpu"
    #                    PAD BOS EOS  a  b
    assert legal_sxv.tolist() == [
        [F, F, T, T, F],  # start: accepts, so EOS; 'a' may follow, 'b' leads to the dead state
        [F, F, F, F, T],  # after 'a': only 'b'
        [F, F, F, F, F],  # dead: nothing
    ]
    parity_sxv = legal_next_table(parity_dfa(), Vocab("ab"))
    assert parity_sxv.tolist() == [[F, F, T, T, T], [F, F, F, T, T]]


def test_tensors_land_on_the_requested_device():
    split = encode_split("train", ["ab", "b"], None, ab_star_dfa(), Vocab("ab"), "cpu")
    assert split.device == torch.device("cpu")
    batch = next(iter_batches(split, 2, seed=0, epoch=0))
    moved = batch.to(torch.device("cpu"))
    for name in Batch.__dataclass_fields__:
        assert getattr(moved, name).device.type == "cpu", name
    with pytest.raises(AttributeError):
        batch.lengths_b = batch.labels_b  # frozen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_cpu_and_never_sync_the_host():
    strings = random_strings(np.random.default_rng(4), 500, 20)
    cpu = encode_split("train", strings, None, ab_star_dfa(), Vocab("ab"), "cpu")
    gpu = encode_split("train", strings, None, ab_star_dfa(), Vocab("ab"), "cuda")
    assert gpu.device.type == "cuda"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu_batches = list(iter_batches(gpu, 16, 0, 0, bucket_by_length=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu_batches = list(iter_batches(cpu, 16, 0, 0, bucket_by_length=True))
    for a, b in zip(gpu_batches, cpu_batches, strict=True):
        assert_batch_equal(a.to("cpu"), b)


# --- task targets: final outputs and legal-next sets ---------------------------------------


def mod3_dfa() -> DFA:
    """Moore machine over {a, b}: the number of a's mod 3 (b keeps the count)."""
    return DFA("ab", [[1, 0], [2, 1], [0, 2]], outputs=[0, 1, 2], num_outputs=3)


def test_final_output_targets_are_the_outputs_of_the_states_read():
    split = encode_split(
        "val", ["aab", "a", ""], None, mod3_dfa(), Vocab("ab"), "cpu", "final_output"
    )
    # 'aab': counts 0 1 2 2; 'a': 0 1 (then PAD 0); '': 0.
    assert split.target_class_nxt.tolist() == [[0, 1, 2, 2], [0, 1, 0, 0], [0, 0, 0, 0]]
    # Labels stay membership (output != 0): 'aab' 2 -> accepted, 'a' 1 -> accepted, '' 0 -> not.
    assert split.labels_np.tolist() == [1, 1, 0]


def test_membership_targets_of_a_moore_machine_are_output_not_zero():
    split = encode_split("val", ["aab"], None, mod3_dfa(), Vocab("ab"), "cpu", "membership")
    assert split.target_class_nxt.tolist() == [[0, 1, 1, 1]]


def test_char_prediction_targets_of_ab_star_written_out_by_hand():
    split = encode_split(
        "val", ["ab", "a", "b"], None, ab_star_dfa(), Vocab("ab"), "cpu", "char_prediction"
    )
    #           PAD BOS EOS  a  b
    start = [F, F, T, T, F]  # accepted: EOS; 'a' may follow
    after_a = [F, F, F, F, T]  # only 'b'
    dead = [F, F, F, F, F]
    pad = [F, F, F, F, F]
    assert split.target_legal_nxtxv.tolist() == [
        [start, after_a, start],  # 'ab'
        [start, after_a, pad],  # 'a'
        [start, dead, pad],  # 'b' leads to the dead state: nothing is legal
    ]


def _reference_targets(strings, accepts, output_of, alphabet, horizon):
    """Per position: class (output) and legal set [EOS, symbols...] by brute force: a symbol
    is legal when some completion of at most `horizon` symbols is accepted."""
    suffixes = [""] + [
        "".join(p) for n in range(1, horizon + 1) for p in itertools.product(alphabet, repeat=n)
    ]
    live = {}

    def is_live(prefix):
        if prefix not in live:
            live[prefix] = any(accepts(prefix + w) for w in suffixes)
        return live[prefix]

    classes, legal = [], []
    for s in strings:
        prefixes = [s[:t] for t in range(len(s) + 1)]
        classes.append([output_of(p) for p in prefixes])
        legal.append([[accepts(p)] + [is_live(p + a) for a in alphabet] for p in prefixes])
    return classes, legal


ATT_NO_YY = "0 0 x\n0 1 y\n1 0 x\n0\n1\n"  # over {x, y}: no 'yy'


@pytest.mark.parametrize("source", ["regex", "dfa", "att", "random_dfa"])
def test_targets_of_every_short_string_agree_with_a_brute_force_reference(source, tmp_path):
    from fsmrun.lang.build import build_dfa
    from fsmrun.schemas.config import DataConfig

    if source == "regex":
        data = DataConfig(regex="(ab|ba)*c?", alphabet="abc")
        accepts = lambda s: re.fullmatch("(ab|ba)*c?", s) is not None  # noqa: E731
        output_of = lambda s: int(accepts(s))  # noqa: E731
    elif source == "dfa":  # the number of a's mod 3 as a Moore machine
        table = {
            "q0": {"a": "q1", "b": "q0"},
            "q1": {"a": "q2", "b": "q1"},
            "q2": {"a": "q0", "b": "q2"},
        }
        data = DataConfig(
            dfa={"states": ["q0", "q1", "q2"], "start": "q0", "transitions": table,
                 "outputs": {"q0": 0, "q1": 1, "q2": 2}},
        )  # fmt: skip
        output_of = lambda s: s.count("a") % 3  # noqa: E731
        accepts = lambda s: output_of(s) != 0  # noqa: E731
    elif source == "att":
        path = tmp_path / "no_yy.att"
        path.write_text(ATT_NO_YY)
        data = DataConfig(att={"path": str(path)})
        accepts = lambda s: "yy" not in s  # noqa: E731
        output_of = lambda s: int(accepts(s))  # noqa: E731
    else:
        data = DataConfig(alphabet="ab", random_dfa={"num_states": 5, "seed": 4})
        table = build_dfa(data)  # the reference walks the transition table itself

        def accepts(s):
            q = table.start
            for c in s:
                q = int(table.transitions[q, "ab".index(c)])
            return bool(table.accepting[q])

        output_of = lambda s: int(accepts(s))  # noqa: E731
    dfa = build_dfa(data)
    alphabet = "".join(dfa.alphabet)
    strings = ["".join(p) for n in range(5) for p in itertools.product(alphabet, repeat=n)]
    classes, legal = _reference_targets(strings, accepts, output_of, alphabet, dfa.num_states)
    vocab = Vocab(alphabet)
    split = encode_split("all", strings, None, dfa, vocab, "cpu", "final_output")
    for i, s in enumerate(strings):
        n = len(s)
        assert split.target_class_nxt[i, : n + 1].tolist() == classes[i], s
        assert split.target_legal_nxtxv[i, : n + 1, 2:].tolist() == legal[i], s
        assert split.labels_np[i] == int(accepts(s)), s
