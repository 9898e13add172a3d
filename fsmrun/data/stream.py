"""Streaming training batches, Deletang et al.'s protocol (`train.sampling = "stream"`).

Every step draws a fresh batch: one length n uniform in [min_len, max_len], then each of the
batch's strings uniform over alphabet^n (repeats allowed, within and across steps), labelled by
the machine. With `data.sampling = "positives"` (e.g. modular arithmetic, whose strings are
well-formed expressions) n is uniform over the lengths in range that have accepted strings, and
the strings uniform among the accepted strings of length n. A draw is a pure function of
(seed, step), from its own random stream, so a resumed run redraws exactly the batches it
would have seen and an audit hashes them like a corpus batch order. All strings of a batch
share one length: no padding.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fsmrun.base.seeding import numpy_rng
from fsmrun.data.batching import steps_per_epoch
from fsmrun.data.encoding import Batch, Device, Vocab, encode_split
from fsmrun.data.sampling import _PathSampler  # uniform accepted strings of one length
from fsmrun.lang.fsm import DFA
from fsmrun.schemas.config import ExperimentConfig


def stream_draw(
    seed: int,
    step: int,
    batch_size: int,
    min_len: int,
    max_len: int,
    alphabet_size: int,
    positives: _PathSampler | None = None,
) -> np.ndarray:
    """int64 [batch_size, n]: the symbol indices of step `step`'s strings (n drawn first);
    with `positives`, accepted strings only (n among the lengths that have some)."""
    rng = numpy_rng(seed, "stream", step)
    if positives is None:
        length = int(rng.integers(min_len, max_len + 1))
        return rng.integers(0, alphabet_size, size=(batch_size, length), dtype=np.int64)
    lengths = [n for n in range(min_len, max_len + 1) if positives.counts[n] > 0]
    length = lengths[int(rng.integers(len(lengths)))]
    return positives.sample(np.full(batch_size, length, dtype=np.int64), rng)


def positive_sampler(dfa: DFA, min_len: int, max_len: int) -> _PathSampler:
    """Uniform sampling of accepted strings up to `max_len` (ValueError if none in range)."""
    sampler = _PathSampler(dfa.transitions, dfa.accepting, dfa.start, max_len)
    if not any(sampler.counts[n] for n in range(min_len, max_len + 1)):
        raise ValueError(f"the language has no strings of length {min_len} to {max_len}")
    return sampler


def stream_epoch(
    seed: int,
    epoch: int,
    steps: int,
    batch_size: int,
    min_len: int,
    max_len: int,
    alphabet_size: int,
    positives: _PathSampler | None = None,
) -> list[np.ndarray]:
    """The draws of epoch `epoch`: global steps epoch * steps .. epoch * steps + steps - 1."""
    return [
        stream_draw(seed, epoch * steps + b, batch_size, min_len, max_len, alphabet_size, positives)
        for b in range(steps)
    ]


def stream_batch(draw_bxn: np.ndarray, dfa: DFA, vocab: Vocab, device: Device, task: str) -> Batch:
    """One drawn batch encoded with every target (labels from the machine) on `device`."""
    symbols = np.array(vocab.symbols)
    strings = ["".join(row) for row in symbols[draw_bxn]] if draw_bxn.size else [""] * len(draw_bxn)
    split = encode_split("stream", strings, None, dfa, vocab, device, task)
    return split.batch(np.arange(len(strings)))


def iter_stream_batches(
    draws: list[np.ndarray],
    start_step: int,
    dfa: DFA,
    vocab: Vocab,
    device: Device,
    task: str,
) -> Iterator[Batch]:
    """The batches of `draws[start_step:]`, encoded one at a time (for exact resume)."""
    if not 0 <= start_step <= len(draws):
        raise ValueError(f"start_step {start_step} outside the epoch's 0..{len(draws)} steps")
    for draw_bxn in draws[start_step:]:
        yield stream_batch(draw_bxn, dfa, vocab, device, task)


def training_steps_per_epoch(exp: ExperimentConfig) -> int:
    """Steps in one epoch: `train.stream_steps` when streaming, else the corpus's batches."""
    if exp.train.sampling == "stream":
        return exp.train.stream_steps
    return steps_per_epoch(exp.data.n_train, exp.train.batch_size)
