"""Streaming training batches: draws are a pure function of (seed, step), one length a batch,
strings uniform over alphabet^n, labels from the machine."""

from __future__ import annotations

import numpy as np

from fsmrun.data.encoding import BOS, EOS, Vocab
from fsmrun.data.stream import (
    iter_stream_batches,
    positive_sampler,
    stream_batch,
    stream_draw,
    stream_epoch,
)
from fsmrun.lang.fsm import compile_regex


def test_a_draw_is_a_function_of_seed_and_step_alone() -> None:
    a = stream_draw(3, 17, batch_size=8, min_len=1, max_len=40, alphabet_size=2)
    b = stream_draw(3, 17, batch_size=8, min_len=1, max_len=40, alphabet_size=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stream_draw(3, 18, 8, 1, 40, 2))
    assert not np.array_equal(a, stream_draw(4, 17, 8, 1, 40, 2))


def test_an_epoch_is_the_draws_of_its_global_steps() -> None:
    epoch = stream_epoch(5, 2, steps=4, batch_size=3, min_len=1, max_len=6, alphabet_size=3)
    for b, draw in enumerate(epoch):
        assert np.array_equal(draw, stream_draw(5, 2 * 4 + b, 3, 1, 6, 3))


def test_lengths_are_uniform_in_the_range_and_symbols_uniform() -> None:
    draws = [stream_draw(0, step, 64, 1, 4, 2) for step in range(2000)]
    lengths = np.bincount([d.shape[1] for d in draws], minlength=5)[1:]
    assert lengths.sum() == 2000 and lengths.min() > 440  # 500 expected each
    ones = np.mean(np.concatenate([d.ravel() for d in draws]))
    assert abs(ones - 0.5) < 0.01
    # repeats are allowed: 64 strings of length 1 over 2 symbols must repeat
    short = next(d for d in draws if d.shape[1] == 1)
    assert len({tuple(r) for r in short}) <= 2


def test_a_stream_batch_is_labelled_by_the_machine_without_padding() -> None:
    dfa = compile_regex("b*(ab*ab*)*", "ab")  # parity of a's
    vocab = Vocab("ab")
    draw = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1]])  # aab, abb, bbb
    batch = stream_batch(draw, dfa, vocab, "cpu", "membership")
    assert batch.input_ids_bxt.tolist() == [[BOS, 3, 3, 4], [BOS, 3, 4, 4], [BOS, 4, 4, 4]]
    assert batch.labels_b.tolist() == [1, 0, 1]
    assert batch.target_next_bxt[:, -1].tolist() == [EOS] * 3
    assert bool(batch.loss_mask_bxt.all())
    resumed = list(iter_stream_batches([draw, draw[:1]], 1, dfa, vocab, "cpu", "membership"))
    assert len(resumed) == 1 and resumed[0].labels_b.tolist() == [1]


def test_positive_draws_are_accepted_strings_of_a_length_that_has_some() -> None:
    dfa = compile_regex("(ab)*", "ab")  # accepted lengths are even
    sampler = positive_sampler(dfa, 1, 6)
    for step in range(20):
        draw = stream_draw(1, step, 4, 1, 6, 2, sampler)
        assert draw.shape[1] in (2, 4, 6)
        assert (draw[:, 0::2] == 0).all() and (draw[:, 1::2] == 1).all()  # abab..
        assert np.array_equal(draw, stream_draw(1, step, 4, 1, 6, 2, sampler))
