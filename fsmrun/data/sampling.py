"""Labelled corpora drawn from a DFA: uniform positives, uniform and near-miss negatives.

`generate_corpus` builds the splits `train`, `val`, `test` and `test_ood` from one seed;
`load_or_generate_corpus` caches them on disk as JSON keyed by (DFA, data config, seed).

`data.sampling` picks the mode: `balanced` (below), `positives` (only the positives below, so
every string is accepted) or `uniform` (a length uniform over the lengths of the range with
strings still free, then a string uniform over all |alphabet|^n strings of that length,
labelled by the machine: Deletang et al.'s sampling, made distinct by redrawing repeats).

Sampling, per split, in mode `balanced`:
- Positives: a length uniform over the lengths of the range that have accepted strings, then
  a string uniform among the accepted strings of that length (path counting on the DFA).
  Strings must be distinct within and across splits, so a draw already taken is rejected and
  redrawn: the positives of a split are a sample *without replacement* from that
  "uniform length, then uniform string" distribution (lengths whose strings are all taken
  drop out).
- Negatives: `near_miss_fraction` of them near misses (a fresh uniform positive with one
  edit -- substitution, insertion or deletion, each uniform among those that keep the length
  in range -- that makes it rejected), the rest uniform rejected strings, drawn exactly like
  positives but on the complement automaton. When a language has fewer distinct near misses
  than asked (their supply runs dry), the shortfall is filled with uniform rejected strings.
- The split is then shuffled. Labels are a numpy bool array.

Precision: exact Python-int path counts give, for every (remaining length m, state q), the
conditional symbol distribution `count(m-1, delta(q, a)) / count(m, q)`, each ratio a correctly
rounded float64 (Python's int / int). A string's probability is a product of m such ratios,
so its relative error is below ~m * 2**-52 (1e-13 at m = 500): no sample of feasible size can
tell it from exactly uniform. Zero counts stay exactly zero, so a positive draw can never be
a rejected string, and labels are checked against the DFA anyway.

Random streams: `numpy_rng(seed, "data", split_index, purpose)`, one per split and purpose, so
e.g. changing `n_test_ood` leaves train/val/test unchanged and changing `n_test` leaves
train/val unchanged (later splits exclude the strings of earlier ones).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fsmrun.base.hashing import canonical_json
from fsmrun.base.io import atomic_write_text
from fsmrun.base.seeding import numpy_rng
from fsmrun.data.capacity import check_capacity, split_sizes
from fsmrun.data.corpus import SPLITS, Corpus, CorpusError
from fsmrun.lang.fsm import DFA
from fsmrun.schemas.config import DataConfig

# Bump when the sampling algorithm changes: it is part of the cache key.
GENERATOR_VERSION = 1

_POSITIVES, _NEAR_MISSES, _UNIFORM_NEGATIVES, _SHUFFLE, _UNIFORM = range(5)
_NEAR_MISS_DRY_ROUNDS = 3  # rounds in a row without a new near miss before giving up
_MAX_ROUNDS = 10_000

log = logging.getLogger(__name__)


class _PathSampler:
    """Uniform sampling of the strings of a given length that end in an accepting state.

    `counts[n]` is the exact number of such strings of length n (Python int);
    `cum_mxsxa[m, q]` is the cumulative symbol distribution with m symbols left in state q,
    with +inf from the last possible symbol on so rounding can never pick an impossible one.
    """

    def __init__(self, transitions: np.ndarray, accepting: np.ndarray, start: int, max_len: int):
        self.transitions = transitions
        self.start = start
        num_states, num_symbols = transitions.shape
        count_s = np.array([int(a) for a in accepting], dtype=object)
        self.counts = [int(count_s[start])]
        self.cum_mxsxa = np.zeros((max_len + 1, num_states, num_symbols))
        for m in range(1, max_len + 1):
            next_sxa = count_s[transitions]  # strings of length m-1 after each symbol
            count_s = next_sxa.sum(axis=1) if num_symbols > 1 else next_sxa[:, 0].copy()
            live = np.array([c > 0 for c in count_s], dtype=bool)
            denom_s = np.where(live, count_s, 1)
            prob_sxa = (next_sxa / denom_s[:, None]).astype(np.float64)
            cum_sxa = np.cumsum(prob_sxa, axis=1)
            last_s = num_symbols - 1 - np.argmax(prob_sxa[:, ::-1] > 0, axis=1)
            after_last_sxa = np.arange(num_symbols)[None, :] >= last_s[:, None]
            cum_sxa[after_last_sxa & live[:, None]] = np.inf
            self.cum_mxsxa[m] = cum_sxa
            self.counts.append(int(count_s[start]))

    def sample(self, lengths_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Symbol ids [B, max length] of uniform strings of the given lengths (0 past the end)."""
        batch = len(lengths_b)
        width = int(lengths_b.max()) if batch else 0
        num_states, num_symbols = self.transitions.shape
        cum_flat = self.cum_mxsxa.reshape(-1, num_symbols)
        # Longest first, so the rows still being extended at step i are a prefix.
        order_b = np.argsort(-lengths_b, kind="stable")
        sorted_len_b = lengths_b[order_b]
        num_active = batch - np.searchsorted(sorted_len_b[::-1], np.arange(width), side="right")
        symbols_bxw = np.zeros((batch, width), dtype=np.int64)
        state_b = np.full(batch, self.start, dtype=np.int64)
        for i in range(width):
            k = int(num_active[i])
            state_k = state_b[:k]
            cum_kxa = cum_flat[(sorted_len_b[:k] - i) * num_states + state_k]
            u_k = rng.random(k)
            symbol_k = (cum_kxa <= u_k[:, None]).sum(axis=1)
            symbols_bxw[:k, i] = symbol_k
            state_b[:k] = self.transitions[state_k, symbol_k]
        out_bxw = np.empty_like(symbols_bxw)
        out_bxw[order_b] = symbols_bxw
        return out_bxw


def _final_states(dfa: DFA, symbols_bxw: np.ndarray, lengths_b: np.ndarray) -> np.ndarray:
    """DFA state after reading each row's first `lengths_b` symbols (vectorised run)."""
    state_b = np.full(len(lengths_b), dfa.start, dtype=np.int64)
    for i in range(symbols_bxw.shape[1]):
        step_b = dfa.transitions[state_b, symbols_bxw[:, i]]
        state_b = np.where(i < lengths_b, step_b, state_b)
    return state_b


def _to_strings(
    alphabet: Sequence[str], symbols_bxw: np.ndarray, lengths_b: np.ndarray
) -> list[str]:
    codes = [ord(c) for c in alphabet]
    wide = max(codes, default=0) > 255
    table = np.array(codes, dtype=np.uint32 if wide else np.uint8)
    width = symbols_bxw.shape[1]
    buf = table[symbols_bxw].tobytes() if width else b""
    if wide:
        return [
            buf[4 * i * width : 4 * (i * width + n)].decode("utf-32-le")
            for i, n in enumerate(lengths_b.tolist())
        ]
    return [
        buf[i * width : i * width + n].decode("latin-1") for i, n in enumerate(lengths_b.tolist())
    ]


class _Pool:
    """Strings already used by any split, and how many of each length and label."""

    def __init__(self, max_len: int) -> None:
        self.taken: set[str] = set()
        self.used = {True: [0] * (max_len + 1), False: [0] * (max_len + 1)}

    def add_new(self, strings: list[str], label: bool, out: list[str], limit: int) -> int:
        """Append to `out` the strings not taken yet (up to `limit` in all); return how many."""
        added = 0
        for s in strings:
            if len(out) >= limit:
                break
            if s not in self.taken:
                self.taken.add(s)
                self.used[label][len(s)] += 1
                out.append(s)
                added += 1
        return added


def _sample_distinct(
    sampler: _PathSampler,
    alphabet: Sequence[str],
    lo: int,
    hi: int,
    k: int,
    label: bool,
    pool: _Pool,
    rng: np.random.Generator,
) -> list[str]:
    """k new distinct strings of label `label`, uniform length then uniform string, no repeats."""
    out: list[str] = []
    for _ in range(_MAX_ROUNDS):
        if len(out) >= k:
            return out
        open_lengths = [n for n in range(lo, hi + 1) if sampler.counts[n] > pool.used[label][n]]
        if not open_lengths:
            break
        draws = (k - len(out)) * 5 // 4 + 64
        lengths_b = np.array(open_lengths, dtype=np.int64)[
            rng.integers(len(open_lengths), size=draws)
        ]
        symbols_bxw = sampler.sample(lengths_b, rng)
        pool.add_new(_to_strings(alphabet, symbols_bxw, lengths_b), label, out, k)
    if len(out) < k:  # the capacity check up front makes this unreachable
        raise CorpusError(f"could not draw {k} distinct strings of length {lo}..{hi}")
    return out


def _sample_uniform(
    dfa: DFA, lo: int, hi: int, k: int, pool: _Pool, rng: np.random.Generator
) -> tuple[list[str], list[bool]]:
    """k new distinct strings, uniform length among the lengths with free strings, then uniform
    over all strings of that length; with their membership labels."""
    num_symbols = len(dfa.alphabet)
    out: list[str] = []
    labels: list[bool] = []
    for _ in range(_MAX_ROUNDS):
        if len(out) >= k:
            break
        open_lengths = [
            n
            for n in range(lo, hi + 1)
            if num_symbols**n > pool.used[True][n] + pool.used[False][n]
        ]
        if not open_lengths:
            break
        draws = (k - len(out)) * 5 // 4 + 64
        lengths_b = np.array(open_lengths, dtype=np.int64)[
            rng.integers(len(open_lengths), size=draws)
        ]
        width = int(lengths_b.max())
        symbols_bxw = rng.integers(num_symbols, size=(draws, width))
        symbols_bxw[np.arange(width)[None, :] >= lengths_b[:, None]] = 0
        accepted_b = dfa.accepting[_final_states(dfa, symbols_bxw, lengths_b)]
        strings = _to_strings(dfa.alphabet, symbols_bxw, lengths_b)
        for s, label in zip(strings, accepted_b.tolist(), strict=True):
            if len(out) >= k:
                break
            if pool.add_new([s], label, out, k):
                labels.append(label)
    if len(out) < k:  # the capacity check up front makes this unreachable
        raise CorpusError(f"could not draw {k} distinct strings of length {lo}..{hi}")
    return out, labels


def _near_misses(
    dfa: DFA,
    positives: _PathSampler,
    lo: int,
    hi: int,
    k: int,
    pool: _Pool,
    rng: np.random.Generator,
) -> list[str]:
    """Up to k new rejected strings, each one edit away from a uniform positive of length lo..hi."""
    out: list[str] = []
    base_lengths = [n for n in range(lo, hi + 1) if positives.counts[n] > 0]
    num_symbols = len(dfa.alphabet)
    dry = 0
    yield_rate = 0.5  # share of candidate edits that give a new near miss, updated each round
    for _ in range(_MAX_ROUNDS):
        if len(out) >= k or not base_lengths or dry >= _NEAR_MISS_DRY_ROUNDS:
            break
        draws = min(int((k - len(out)) * 1.25 / max(yield_rate, 0.02)), 1_000_000) + 256
        length_b = np.array(base_lengths, dtype=np.int64)[
            rng.integers(len(base_lengths), size=draws)
        ]
        base_bxw = positives.sample(length_b, rng)
        width = base_bxw.shape[1]
        # Edit kinds 0 substitution, 1 insertion, 2 deletion, uniform among those allowed.
        allowed_bx3 = np.stack(
            [
                (length_b >= 1) & (num_symbols >= 2),
                length_b + 1 <= hi,
                (length_b >= 1) & (length_b - 1 >= lo),
            ],
            axis=1,
        )
        num_allowed_b = allowed_bx3.sum(axis=1)
        pick_b = np.floor(rng.random(draws) * num_allowed_b).astype(np.int64)
        kind_b = np.argmax(np.cumsum(allowed_bx3, axis=1) > pick_b[:, None], axis=1)
        span_b = np.where(kind_b == 1, length_b + 1, length_b)
        pos_b = np.minimum(np.floor(rng.random(draws) * span_b).astype(np.int64), span_b - 1)
        pos_b = np.maximum(pos_b, 0)
        shift_b = rng.integers(1, max(num_symbols, 2), size=draws)
        insert_b = rng.integers(num_symbols, size=draws)

        padded_bxw = np.zeros((draws, width + 1), dtype=np.int64)
        padded_bxw[:, :width] = base_bxw
        col_bxw = np.broadcast_to(np.arange(width + 1), (draws, width + 1))
        src_bxw = np.where(
            (kind_b == 1)[:, None] & (col_bxw > pos_b[:, None]),
            col_bxw - 1,
            np.where((kind_b == 2)[:, None] & (col_bxw >= pos_b[:, None]), col_bxw + 1, col_bxw),
        )
        rows_b = np.arange(draws)
        edited_bxw = padded_bxw[rows_b[:, None], np.minimum(src_bxw, width)]
        old_b = padded_bxw[rows_b, np.minimum(pos_b, width)]
        new_b = np.where(kind_b == 0, (old_b + shift_b) % max(num_symbols, 1), insert_b)
        set_b = kind_b != 2
        edited_bxw[rows_b[set_b], pos_b[set_b]] = new_b[set_b]
        edited_len_b = length_b + np.where(kind_b == 1, 1, np.where(kind_b == 2, -1, 0))

        rejected_b = (num_allowed_b > 0) & ~dfa.accepting[
            _final_states(dfa, edited_bxw, edited_len_b)
        ]
        strings = _to_strings(dfa.alphabet, edited_bxw[rejected_b], edited_len_b[rejected_b])
        added = pool.add_new(strings, False, out, k)
        dry = 0 if added else dry + 1
        yield_rate = added / draws
    return out


def generate_corpus(dfa: DFA, data_cfg: DataConfig, seed: int) -> Corpus:
    """Draw the labelled splits described by `data_cfg` from `dfa` (see module docstring).

    Randomness comes only from `numpy_rng(seed, "data", split_index, purpose)`: the same seed
    gives identical output. Raises CorpusError for an empty language, a length range without
    accepted strings, or a split that cannot be filled with distinct strings.
    """
    if data_cfg.alphabet is not None and "".join(dfa.alphabet) != data_cfg.alphabet:
        raise CorpusError(
            f"the DFA's alphabet {''.join(dfa.alphabet)!r} differs from the data config's "
            f"{data_cfg.alphabet!r}; compile the regex over data.alphabet"
        )
    if not dfa.live[dfa.start]:
        raise CorpusError(
            f"the language of {data_cfg.source_label} over {''.join(dfa.alphabet)!r} is empty "
            f"(it accepts no string at all); change the language source"
        )
    sizes = split_sizes(data_cfg)
    groups = [(("train", "val", "test"), data_cfg.min_len, data_cfg.max_len)]
    if data_cfg.n_test_ood > 0:
        groups.append((("test_ood",), data_cfg.ood_min_len, data_cfg.ood_max_len))
    max_len = max(hi for _, _, hi in groups)
    positives = _PathSampler(dfa.transitions, dfa.accepting, dfa.start, max_len)
    negatives = _PathSampler(dfa.transitions, ~dfa.accepting, dfa.start, max_len)
    for splits, lo, hi in groups:
        check_capacity(dfa, data_cfg, positives.counts, splits, lo, hi, sizes)

    pool = _Pool(max_len)
    parts: dict[str, tuple[list[str], np.ndarray]] = {}
    for splits, lo, hi in groups:
        for name in splits:
            index = SPLITS.index(name)
            n_pos, n_near, n_neg = sizes[name]
            if data_cfg.sampling == "uniform":
                strings, accepted = _sample_uniform(
                    dfa, lo, hi, n_pos, pool, numpy_rng(seed, "data", index, _UNIFORM)
                )
                parts[name] = (strings, np.array(accepted, dtype=bool))
                continue
            pos = _sample_distinct(
                positives,
                dfa.alphabet,
                lo,
                hi,
                n_pos,
                True,
                pool,
                numpy_rng(seed, "data", index, _POSITIVES),
            )
            near = _near_misses(
                dfa, positives, lo, hi, n_near, pool, numpy_rng(seed, "data", index, _NEAR_MISSES)
            )
            uniform = _sample_distinct(
                negatives,
                dfa.alphabet,
                lo,
                hi,
                n_neg - len(near),
                False,
                pool,
                numpy_rng(seed, "data", index, _UNIFORM_NEGATIVES),
            )
            strings = pos + near + uniform
            labels = np.array([True] * len(pos) + [False] * (len(near) + len(uniform)))
            order = numpy_rng(seed, "data", index, _SHUFFLE).permutation(len(strings))
            parts[name] = ([strings[i] for i in order], labels[order])
    return Corpus("".join(dfa.alphabet), parts)


def corpus_cache_key(dfa: DFA, data_cfg: DataConfig, seed: int) -> str:
    """sha256 (hex) of (DFA JSON, data config JSON, seed, generator version)."""
    doc = [dfa.to_json(), data_cfg.model_dump(mode="json"), int(seed), GENERATOR_VERSION]
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _labels_match(corpus: Corpus, dfa: DFA) -> bool:
    for name in SPLITS:
        strings = corpus.strings(name)
        if not strings:
            continue
        lengths_b = np.array([len(s) for s in strings], dtype=np.int64)
        symbols_bxw = np.zeros((len(strings), int(lengths_b.max())), dtype=np.int64)
        for i, s in enumerate(strings):
            symbols_bxw[i, : len(s)] = dfa.symbol_ids(s)
        accepted_b = dfa.accepting[_final_states(dfa, symbols_bxw, lengths_b)]
        if not np.array_equal(accepted_b, corpus.labels(name)):
            return False
    return True


def load_or_generate_corpus(
    dfa: DFA, data_cfg: DataConfig, seed: int, cache_dir: Path | None
) -> Corpus:
    """The corpus of (dfa, data_cfg, seed), read from `cache_dir` when cached there.

    The cache file is `<cache_dir>/corpus-<key>.json`, written atomically; one that cannot be
    read, fails its fingerprint or disagrees with the DFA is regenerated (with a warning).
    `cache_dir=None` always generates.
    """
    if cache_dir is None:
        return generate_corpus(dfa, data_cfg, seed)
    path = Path(cache_dir) / f"corpus-{corpus_cache_key(dfa, data_cfg, seed)}.json"
    if path.exists():
        try:
            corpus = Corpus.from_json(path.read_text(encoding="utf-8"))
            if _labels_match(corpus, dfa):
                return corpus
            log.warning("cached corpus %s disagrees with the DFA; regenerating", path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning("cached corpus %s is unreadable (%s); regenerating", path, err)
    corpus = generate_corpus(dfa, data_cfg, seed)
    atomic_write_text(path, corpus.to_json())
    return corpus
