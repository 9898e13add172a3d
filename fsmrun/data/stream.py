"""Streaming training batches, Deletang et al.'s protocol (`train.sampling = "stream"`).

Every step draws a fresh batch: one length n uniform in [min_len, max_len], then each of the
batch's strings uniform over alphabet^n (repeats allowed, within and across steps), labelled by
the machine. A draw is a pure function of (seed, step), from its own random stream, so a
resumed run redraws exactly the batches it would have seen and an audit hashes them like a
corpus batch order. All strings of a batch share one length: no padding.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fsmrun.base.seeding import numpy_rng
from fsmrun.data.encoding import Batch, Device, Vocab, encode_split
from fsmrun.lang.fsm import DFA


def stream_draw(
    seed: int, step: int, batch_size: int, min_len: int, max_len: int, alphabet_size: int
) -> np.ndarray:
    """int64 [batch_size, n]: the symbol indices of step `step`'s strings (n drawn first)."""
    rng = numpy_rng(seed, "stream", step)
    length = int(rng.integers(min_len, max_len + 1))
    return rng.integers(0, alphabet_size, size=(batch_size, length), dtype=np.int64)


def stream_epoch(
    seed: int,
    epoch: int,
    steps: int,
    batch_size: int,
    min_len: int,
    max_len: int,
    alphabet_size: int,
) -> list[np.ndarray]:
    """The draws of epoch `epoch`: global steps epoch * steps .. epoch * steps + steps - 1."""
    return [
        stream_draw(seed, epoch * steps + b, batch_size, min_len, max_len, alphabet_size)
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
