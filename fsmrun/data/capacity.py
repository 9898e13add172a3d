"""Split sizes of a data config and the capacity check: can a language fill them with distinct
strings? A clear CorpusError, before any sampling, when it cannot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fsmrun.data.corpus import CorpusError
from fsmrun.lang.fsm import DFA
from fsmrun.schemas.config import DataConfig


def _half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_sizes(data_cfg: DataConfig) -> dict[str, tuple[int, int, int]]:
    """(positives, near misses, negatives) per split; in modes `positives` and `uniform` the
    whole split is counted in the first entry (uniform strings are not drawn by label)."""
    totals = {
        "train": data_cfg.n_train,
        "val": data_cfg.n_val,
        "test": data_cfg.n_test,
        "test_ood": data_cfg.n_test_ood,
    }
    sizes = {}
    for name, n in totals.items():
        if data_cfg.sampling != "balanced":
            sizes[name] = (n, 0, 0)
            continue
        n_pos = _half_up(n * data_cfg.positive_fraction)
        n_neg = n - n_pos
        sizes[name] = (n_pos, _half_up(n_neg * data_cfg.near_miss_fraction), n_neg)
    return sizes


def _accepted_lengths_near(dfa: DFA, lo: int, hi: int) -> tuple[int | None, int | None]:
    """Largest length below lo and smallest above hi that have accepted strings (or None)."""
    limit = hi + 2 * dfa.num_states + 2
    reach_s = np.zeros(dfa.num_states, dtype=bool)
    reach_s[dfa.start] = True
    below = above = None
    for n in range(limit + 1):
        if dfa.accepting[reach_s].any():
            if n < lo:
                below = n
            elif n > hi:
                above = n
                break
        nxt_s = np.zeros_like(reach_s)
        nxt_s[dfa.transitions[reach_s].reshape(-1)] = True
        reach_s = nxt_s
    return below, above


def check_capacity(
    dfa: DFA,
    data_cfg: DataConfig,
    accepted_by_length: Sequence[int],
    splits: tuple[str, ...],
    lo: int,
    hi: int,
    sizes: dict[str, tuple[int, int, int]],
) -> None:
    """CorpusError unless `splits` (lengths lo..hi) can be filled with distinct strings;
    `accepted_by_length[n]` counts the accepted strings of length n."""
    ood = splits == ("test_ood",)
    range_name = "ood_min_len..ood_max_len" if ood else "min_len..max_len"
    count_names = "n_test_ood" if ood else "n_train/n_val/n_test"
    num_symbols = len(dfa.alphabet)
    all_avail = sum(num_symbols**n for n in range(lo, hi + 1))
    pos_avail = sum(accepted_by_length[n] for n in range(lo, hi + 1))
    neg_avail = all_avail - pos_avail
    pos_need = sum(sizes[s][0] for s in splits)
    neg_need = sum(sizes[s][2] for s in splits)
    if data_cfg.sampling == "uniform":
        if pos_need > all_avail:
            raise CorpusError(
                f"cannot fill {'/'.join(splits)} with distinct strings: they need {pos_need} "
                f"distinct strings of length {lo}..{hi}, but there are only {all_avail} strings "
                f"of those lengths over {''.join(dfa.alphabet)!r}. Fix: lower {count_names} or "
                f"widen {range_name}"
            )
        return
    balanced = data_cfg.sampling == "balanced"
    fraction_fix = "lower positive_fraction" if balanced else "use sampling = 'uniform'"
    if pos_need and pos_avail == 0:
        below, above = _accepted_lengths_near(dfa, lo, hi)
        near = [str(n) for n in (below, above) if n is not None]
        if len(near) == 2:
            hint = f"the nearest lengths with accepted strings are {near[0]} and {near[1]}"
        elif near:
            hint = f"the nearest length with accepted strings is {near[0]}"
        else:
            hint = "no nearby length has accepted strings"
        raise CorpusError(
            f"the language of {data_cfg.source_label} has no accepted strings with lengths "
            f"{lo}..{hi} ({range_name}); {hint}. Fix: change {range_name} "
            f"(or {'set positive_fraction = 0' if balanced else 'use sampling = uniform'})"
        )
    for label, need, avail, other in (
        ("positive", pos_need, pos_avail, neg_avail),
        ("negative", neg_need, neg_avail, pos_avail),
    ):
        if need > avail:
            detail = ", ".join(
                f"{s} {sizes[s][0] if label == 'positive' else sizes[s][2]}" for s in splits
            )
            raise CorpusError(
                f"cannot fill {'/'.join(splits)} with distinct strings: they need {need} "
                f"distinct {label} strings of length {lo}..{hi} ({detail}), but the language "
                f"{data_cfg.source_label} has only {avail} {label} strings of those lengths "
                f"(and {other} {'negative' if label == 'positive' else 'positive'}). Fix: lower "
                f"{count_names} or "
                f"{'raise positive_fraction' if label == 'negative' else fraction_fix}, or "
                f"widen {range_name}"
            )
