"""Batching by index: the order of an epoch's batches is a pure function of (seed, epoch), so a
resumed run can start at any step; fingerprints of that order for exact resume."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np

from fsmrun.base.seeding import numpy_rng
from fsmrun.data.encoding import Batch, SplitData, batch_width, index_to_device

# Length bucketing sorts groups of this many batches by length before cutting them.
BUCKET_GROUP_BATCHES = 50


def steps_per_epoch(num_strings: int, batch_size: int) -> int:
    """Batches in one epoch: ceil(num_strings / batch_size) (the last one may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return math.ceil(num_strings / batch_size)


def epoch_batches(
    num_strings: int,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    lengths_np: np.ndarray | None = None,
    bucket_by_length: bool = False,
) -> list[np.ndarray]:
    """The batches (int64 index arrays) of epoch `epoch`, a pure function of the arguments.

    Every index appears exactly once. Without bucketing, the batches cut a random
    permutation in order and only the last may be short. With bucketing, the permutation is
    cut into groups of BUCKET_GROUP_BATCHES batches, each group is sorted by length
    (`lengths_np`) and cut into batches, and the batch order is shuffled (the short batch
    can then fall anywhere).
    """
    steps = steps_per_epoch(num_strings, batch_size)
    rng = numpy_rng(seed, "batch_order", epoch)
    perm = rng.permutation(num_strings).astype(np.int64)
    if not bucket_by_length:
        return [perm[k * batch_size : (k + 1) * batch_size] for k in range(steps)]
    if lengths_np is None or len(lengths_np) != num_strings:
        raise ValueError("bucket_by_length needs lengths_np with one length per string")
    group = batch_size * BUCKET_GROUP_BATCHES
    batches = []
    for g in range(0, num_strings, group):
        members = perm[g : g + group]
        members = members[np.argsort(lengths_np[members], kind="stable")]
        batches += [members[k : k + batch_size] for k in range(0, len(members), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def gather_batches(
    split: SplitData, batches: list[np.ndarray], start_step: int = 0
) -> Iterator[Batch]:
    """The batches of an order already computed (`epoch_batches`), from `start_step` on,
    gathered with one host-to-device index copy for all of them."""
    if not 0 <= start_step <= len(batches):
        raise ValueError(f"start_step {start_step} outside the epoch's 0..{len(batches)} steps")
    batches = batches[start_step:]
    if not batches:
        return
    order_dev = index_to_device(np.concatenate(batches), split.device)
    offset = 0
    for index in batches:
        yield split._gather(
            order_dev[offset : offset + len(index)], batch_width(split.lengths_np, index)
        )
        offset += len(index)


def iter_batches(
    split: SplitData,
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    start_step: int = 0,
    bucket_by_length: bool = False,
) -> Iterator[Batch]:
    """The batches of epoch `epoch` of `split`, from step `start_step` on (for exact resume)."""
    batches = epoch_batches(
        split.num_strings,
        batch_size,
        seed,
        epoch,
        lengths_np=split.lengths_np,
        bucket_by_length=bucket_by_length,
    )
    return gather_batches(split, batches, start_step)


def eval_batches(split: SplitData, batch_size: int) -> Iterator[Batch]:
    """All of `split` in a fixed order: sorted by length (stable), cut into `batch_size`."""
    steps = steps_per_epoch(split.num_strings, batch_size)
    order = np.argsort(split.lengths_np, kind="stable").astype(np.int64)
    return gather_batches(
        split, [order[k * batch_size : (k + 1) * batch_size] for k in range(steps)]
    )


def batch_fingerprint(index: np.ndarray) -> str:
    """sha256 (hex) of one batch's index array (checked on resume)."""
    return hashlib.sha256(np.asarray(index, dtype="<i8").tobytes()).hexdigest()


def batch_order_hash(batches: list[np.ndarray]) -> str:
    """sha256 (hex) of a whole batch order; batch boundaries count, not just the sequence."""
    h = hashlib.sha256()
    for index in batches:
        index = np.asarray(index, dtype="<i8")
        h.update(np.int64(len(index)).astype("<i8").tobytes())
        h.update(index.tobytes())
    return h.hexdigest()
