"""Corpus generation: labels, ranges, disjoint splits, uniformity, near misses, errors, cache."""

from __future__ import annotations

import hashlib
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

from fsmrun.data import sampling as datagen
from fsmrun.data.sampling import (
    SPLITS,
    Corpus,
    CorpusError,
    corpus_cache_key,
    generate_corpus,
    load_or_generate_corpus,
)
from fsmrun.lang.fsm import DFA
from fsmrun.schemas.config import DataConfig

# "no 'aa' and ends with b" over {a,b}: 0 start, 1 last read b, 2 last read a, 3 dead.
NO_AA_ENDS_B = DFA("ab", [[2, 1], [2, 1], [3, 1], [3, 3]], [False, True, False, False])
# even number of a's over {a,b}
PARITY = DFA("ab", [[1, 0], [0, 1]], [True, False])
# 1* over {0,1}: 0 start (accepting), 1 dead
ONLY_ONES = DFA("01", [[1, 0], [1, 1]], [True, False])
# (ab)* over {a,b}: 0 start (accepting), 1 after a, 2 dead
AB_STAR = DFA("ab", [[1, 2], [2, 0], [2, 2]], [True, False, False])
EMPTY = DFA("ab", [[0, 0]], [False])
UNIVERSAL = DFA("ab", [[0, 0]], [True])


def cfg(alphabet: str = "ab", **kw) -> DataConfig:
    return DataConfig(regex=kw.pop("regex", "<hand-built>"), alphabet=alphabet, **kw)


SMALL = dict(n_train=400, n_val=100, n_test=100, n_test_ood=100, max_len=12, ood_min_len=13)


def with_label(corpus: Corpus, split: str, label: bool) -> list[str]:
    pairs = zip(corpus.strings(split), corpus.labels(split).tolist(), strict=True)
    return [s for s, y in pairs if y == label]


def edit_neighbours(s: str, alphabet: str) -> set[str]:
    out = set()
    for i in range(len(s) + 1):
        for c in alphabet:
            out.add(s[:i] + c + s[i:])
    for i in range(len(s)):
        out.add(s[:i] + s[i + 1 :])
        for c in alphabet:
            out.add(s[:i] + c + s[i + 1 :])
    out.discard(s)
    return out


@pytest.mark.parametrize("dfa", [NO_AA_ENDS_B, PARITY], ids=["no_aa_ends_b", "parity"])
def test_labels_are_dfa_membership_and_lengths_stay_in_range(dfa: DFA) -> None:
    corpus = generate_corpus(dfa, cfg(**SMALL), seed=3)
    for split in SPLITS:
        strings, labels = corpus.strings(split), corpus.labels(split)
        assert labels.dtype == bool and len(strings) == len(labels)
        assert [dfa.accepts(s) for s in strings] == labels.tolist()
        lo, hi = (13, 40) if split == "test_ood" else (1, 12)
        assert all(lo <= len(s) <= hi for s in strings)


def test_split_sizes_and_positive_counts_follow_the_config() -> None:
    corpus = generate_corpus(NO_AA_ENDS_B, cfg(**SMALL, positive_fraction=0.3), seed=0)
    sizes = {s: corpus.num_strings(s) for s in SPLITS}
    assert sizes == {"train": 400, "val": 100, "test": 100, "test_ood": 100}
    assert [int(corpus.labels(s).sum()) for s in SPLITS] == [120, 30, 30, 30]


def test_splits_are_disjoint_and_strings_distinct() -> None:
    corpus = generate_corpus(NO_AA_ENDS_B, cfg(**SMALL), seed=1)
    everything = [s for split in SPLITS for s in corpus.strings(split)]
    assert len(everything) == 700
    assert len(set(everything)) == len(everything)


def test_no_test_ood_split_when_n_test_ood_is_zero() -> None:
    corpus = generate_corpus(PARITY, cfg(**{**SMALL, "n_test_ood": 0}), seed=0)
    assert corpus.strings("test_ood") == []
    assert corpus.labels("test_ood").shape == (0,)


def test_sampler_draws_accepted_strings_of_a_length_uniformly() -> None:
    # w + "b" with w free of "aa": N(n-1) strings, where N(m) = Fibonacci(m + 2).
    sampler = datagen._PathSampler(NO_AA_ENDS_B.transitions, NO_AA_ENDS_B.accepting, 0, 6)
    assert sampler.counts == [0, 1, 2, 3, 5, 8, 13]
    brute = ["".join(p) for p in itertools.product("ab", repeat=6)]
    accepted = sorted(s for s in brute if "aa" not in s and s.endswith("b"))
    assert len(accepted) == 13
    draws = 13_000
    symbols = sampler.sample(np.full(draws, 6), np.random.default_rng(7))
    strings = ["".join("ab"[i] for i in row) for row in symbols]
    freq = {s: strings.count(s) for s in set(strings)}
    assert sorted(freq) == accepted
    chi2 = sum((f - 1000) ** 2 / 1000 for f in freq.values())
    assert chi2 < 32.9  # chi-square, 12 degrees of freedom, p = 0.001


def test_positive_lengths_are_uniform_over_lengths_that_have_positives() -> None:
    # Parity has 2**(n-1) accepted strings of length n >= 1: barely any repeats are rejected.
    data = cfg(min_len=10, max_len=12, n_train=900, n_val=1, n_test=1, n_test_ood=0)
    corpus = generate_corpus(PARITY, data, seed=0)
    pos = with_label(corpus, "train", True)
    counts = [sum(len(s) == n for s in pos) for n in (10, 11, 12)]
    assert sum(counts) == 450
    chi2 = sum((c - 150) ** 2 / 150 for c in counts)
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001


def test_every_positive_can_be_used_when_the_language_has_exactly_enough() -> None:
    # (ab)* has 4 strings in lengths 1..8; train 2 + val 1 + test 1 positives take them all.
    data = cfg(min_len=1, max_len=8, n_train=4, n_val=1, n_test=1, n_test_ood=0)
    corpus = generate_corpus(AB_STAR, data, seed=0)
    pos = [s for split in SPLITS for s in with_label(corpus, split, True)]
    assert sorted(pos) == ["ab", "abab", "ababab", "abababab"]


def test_near_misses_are_rejected_and_one_edit_from_a_positive() -> None:
    data = cfg(**SMALL, near_miss_fraction=1.0)
    corpus = generate_corpus(NO_AA_ENDS_B, data, seed=2)
    for split in SPLITS:
        lo, hi = (13, 40) if split == "test_ood" else (1, 12)
        negatives = with_label(corpus, split, False)
        assert negatives
        for s in negatives:
            assert not NO_AA_ENDS_B.accepts(s)
            assert any(
                lo <= len(t) <= hi and NO_AA_ENDS_B.accepts(t) for t in edit_neighbours(s, "ab")
            ), s


def test_near_misses_running_dry_are_topped_up_with_uniform_negatives() -> None:
    # 1* in lengths 1..8: the near misses are the strings with exactly one 0: 1+2+...+8 = 36.
    data = cfg("01", max_len=8, n_train=100, n_val=1, n_test=1, n_test_ood=0, positive_fraction=0.0)
    data = data.model_copy(update={"near_miss_fraction": 1.0})
    corpus = generate_corpus(ONLY_ONES, data, seed=0)
    negatives = [s for split in SPLITS for s in corpus.strings(split)]
    assert len(negatives) == 102 and not any(ONLY_ONES.accepts(s) for s in negatives)
    assert sum(s.count("0") == 1 for s in negatives) == 36


def test_same_seed_same_corpus_other_seed_different() -> None:
    data = cfg(**SMALL)
    a = generate_corpus(NO_AA_ENDS_B, data, seed=5)
    b = generate_corpus(NO_AA_ENDS_B, data, seed=5)
    c = generate_corpus(NO_AA_ENDS_B, data, seed=6)
    assert a.to_json() == b.to_json() and a.fingerprint() == b.fingerprint()
    assert a.strings("train") != c.strings("train") and a.fingerprint() != c.fingerprint()


def test_later_split_sizes_do_not_change_earlier_splits() -> None:
    base = generate_corpus(NO_AA_ENDS_B, cfg(**SMALL), seed=0)
    more_ood = generate_corpus(NO_AA_ENDS_B, cfg(**{**SMALL, "n_test_ood": 250}), seed=0)
    more_test = generate_corpus(NO_AA_ENDS_B, cfg(**{**SMALL, "n_test": 150}), seed=0)
    for split in ("train", "val", "test"):
        assert more_ood.strings(split) == base.strings(split)
    assert more_ood.num_strings("test_ood") == 250
    for split in ("train", "val"):
        assert more_test.strings(split) == base.strings(split)


def test_long_strings_use_exact_counts_beyond_int64() -> None:
    # 2**300 strings of length 301 have an even number of a's: counts far past int64.
    data = cfg(min_len=300, max_len=301, n_train=20, n_val=2, n_test=2, n_test_ood=0)
    corpus = generate_corpus(PARITY, data, seed=0)
    strings = corpus.strings("train")
    assert [s.count("a") % 2 == 0 for s in strings] == corpus.labels("train").tolist()
    assert datagen._PathSampler(PARITY.transitions, PARITY.accepting, 0, 301).counts[301] == 2**300


def test_empty_language_is_an_error() -> None:
    with pytest.raises(CorpusError, match="is empty"):
        generate_corpus(EMPTY, cfg(), seed=0)


def test_length_range_without_positives_names_the_nearest_lengths() -> None:
    data = cfg(min_len=3, max_len=3, n_test_ood=0)
    with pytest.raises(CorpusError) as err:
        generate_corpus(AB_STAR, data, seed=0)
    message = str(err.value)
    assert "no accepted strings with lengths 3..3" in message
    assert "nearest lengths with accepted strings are 2 and 4" in message
    assert "min_len..max_len" in message


def test_split_that_cannot_be_filled_says_how_many_strings_exist() -> None:
    # 1* has one accepted string per length: 5 in 1..5, but 10 + 1 + 1 positives are asked.
    data = cfg("01", max_len=5, n_train=20, n_val=2, n_test=2, n_test_ood=0)
    with pytest.raises(CorpusError) as err:
        generate_corpus(ONLY_ONES, data, seed=0)
    message = str(err.value)
    assert "need 12 distinct positive strings of length 1..5" in message
    assert "train 10, val 1, test 1" in message
    assert "only 5 positive strings" in message and "and 57 negative" in message


def test_universal_language_cannot_supply_negatives() -> None:
    data = cfg(max_len=3, n_train=4, n_val=1, n_test=1, n_test_ood=0)
    with pytest.raises(
        CorpusError, match="need 2 distinct negative strings of length 1..3 .* only 0 negative"
    ):
        generate_corpus(UNIVERSAL, data, seed=0)


def test_ood_range_is_checked_with_its_own_field_names() -> None:
    data = cfg("01", max_len=4, n_train=4, n_val=1, n_test=1, ood_min_len=5, ood_max_len=6)
    data = data.model_copy(update={"n_test_ood": 10, "positive_fraction": 0.5})
    with pytest.raises(CorpusError, match="ood_min_len..ood_max_len"):
        generate_corpus(ONLY_ONES, data, seed=0)


def test_alphabet_mismatch_is_an_error() -> None:
    with pytest.raises(CorpusError, match="alphabet"):
        generate_corpus(PARITY, cfg("ba"), seed=0)


def test_fingerprint_is_sha256_of_the_canonical_content() -> None:
    corpus = Corpus("ab", {"train": (["ab", "b"], [True, False]), "val": (["a"], [False])})
    text = (
        '{"alphabet":"ab","splits":{"test":{"labels":[],"strings":[]},'
        '"test_ood":{"labels":[],"strings":[]},'
        '"train":{"labels":[1,0],"strings":["ab","b"]},'
        '"val":{"labels":[0],"strings":["a"]}}}'
    )
    assert corpus.fingerprint() == hashlib.sha256(text.encode()).hexdigest()
    flipped = Corpus("ab", {"train": (["ab", "b"], [True, True]), "val": (["a"], [False])})
    assert flipped.fingerprint() != corpus.fingerprint()


def test_json_round_trip_keeps_content_and_fingerprint() -> None:
    corpus = generate_corpus(NO_AA_ENDS_B, cfg(**SMALL), seed=0)
    again = Corpus.from_json(corpus.to_json())
    assert again == corpus and again.fingerprint() == corpus.fingerprint()
    for split in SPLITS:
        assert again.strings(split) == corpus.strings(split)
        assert np.array_equal(again.labels(split), corpus.labels(split))
    tampered = corpus.to_json().replace('"labels":[1', '"labels":[0', 1)
    with pytest.raises(ValueError, match="fingerprint"):
        Corpus.from_json(tampered)


def test_cache_round_trip_skips_generation(tmp_path: Path, monkeypatch) -> None:
    data = cfg(**SMALL)
    first = load_or_generate_corpus(NO_AA_ENDS_B, data, 0, tmp_path)
    path = tmp_path / f"corpus-{corpus_cache_key(NO_AA_ENDS_B, data, 0)}.json"
    assert path.is_file()

    def fail(*args, **kwargs):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(datagen, "generate_corpus", fail)
    assert load_or_generate_corpus(NO_AA_ENDS_B, data, 0, tmp_path) == first


def test_cache_key_depends_on_dfa_config_and_seed() -> None:
    key = corpus_cache_key(PARITY, cfg(), 0)
    assert len(key) == 64
    assert key != corpus_cache_key(PARITY, cfg(), 1)
    assert key != corpus_cache_key(NO_AA_ENDS_B, cfg(), 0)
    assert key != corpus_cache_key(PARITY, cfg(n_train=10), 0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "not json at all",
        lambda text: text.replace('"labels":[1', '"labels":[0', 1),
    ],
    ids=["truncated", "garbage", "tampered"],
)
def test_corrupt_cache_file_is_regenerated(tmp_path: Path, damage, caplog) -> None:
    data = cfg(**SMALL)
    original = load_or_generate_corpus(NO_AA_ENDS_B, data, 0, tmp_path)
    path = tmp_path / f"corpus-{corpus_cache_key(NO_AA_ENDS_B, data, 0)}.json"
    path.write_text(damage(path.read_text()))
    with caplog.at_level(logging.WARNING):
        again = load_or_generate_corpus(NO_AA_ENDS_B, data, 0, tmp_path)
    assert again == original
    assert "regenerating" in caplog.text
    assert Corpus.from_json(path.read_text()) == original


def test_no_cache_dir_just_generates() -> None:
    data = cfg(**SMALL)
    assert load_or_generate_corpus(PARITY, data, 4, None) == generate_corpus(PARITY, data, 4)


# --- sampling modes ----------------------------------------------------------------------


def test_uniform_mode_labels_by_the_machine_and_keeps_strings_distinct() -> None:
    c = cfg(sampling="uniform", min_len=1, max_len=8, n_train=300, n_val=50, n_test=50,
            ood_min_len=9, ood_max_len=12, n_test_ood=100)  # fmt: skip
    corpus = generate_corpus(NO_AA_ENDS_B, c, seed=0)
    everything = [s for name in SPLITS for s in corpus.strings(name)]
    assert len(everything) == len(set(everything)) == 500
    for name in SPLITS:
        labels = [NO_AA_ENDS_B.accepts(s) for s in corpus.strings(name)]
        assert corpus.labels(name).tolist() == labels
    lengths = {len(s) for s in corpus.strings("test_ood")}
    assert lengths <= set(range(9, 13))
    # Uniform strings of this language are mostly rejected (Fibonacci-many of 2^n accepted).
    assert corpus.labels("train").mean() < 0.3


def test_uniform_mode_draws_lengths_uniformly_where_strings_are_plentiful() -> None:
    # 2^16 strings and more per length: repeats (redrawn) are rare.
    c = cfg(sampling="uniform", min_len=16, max_len=19, n_train=4000, n_val=1, n_test=1,
            n_test_ood=0)  # fmt: skip
    lengths = np.array([len(s) for s in generate_corpus(PARITY, c, seed=1).strings("train")])
    counts = np.bincount(lengths, minlength=20)[16:]
    assert counts.sum() == 4000 and (abs(counts - 1000) < 120).all()  # about 5 sigma


def test_uniform_mode_takes_every_string_of_short_lengths_then_moves_on() -> None:
    # Lengths 1-3 hold 2 + 4 + 8 = 14 strings; ask for all of them.
    c = cfg(sampling="uniform", min_len=1, max_len=3, n_train=10, n_val=2, n_test=2,
            n_test_ood=0)  # fmt: skip
    corpus = generate_corpus(PARITY, c, seed=0)
    everything = sorted(s for name in SPLITS for s in corpus.strings(name))
    assert everything == sorted(
        "".join(p) for n in (1, 2, 3) for p in itertools.product("ab", repeat=n)
    )


def test_uniform_mode_too_many_strings_is_a_corpus_error() -> None:
    c = cfg(sampling="uniform", min_len=1, max_len=3, n_train=12, n_val=2, n_test=1,
            n_test_ood=0)  # fmt: skip
    with pytest.raises(
        CorpusError, match="need 15 distinct strings of length 1..3, but there are only 14"
    ):
        generate_corpus(PARITY, c, seed=0)


def test_uniform_mode_over_long_lengths_is_easy() -> None:
    c = cfg(sampling="uniform", min_len=30, max_len=40, n_train=50, n_val=5, n_test=5,
            ood_min_len=400, ood_max_len=500, n_test_ood=5)  # fmt: skip
    corpus = generate_corpus(PARITY, c, seed=0)
    assert all(400 <= len(s) <= 500 for s in corpus.strings("test_ood"))


def test_positives_mode_draws_accepted_strings_only() -> None:
    c = cfg(sampling="positives", min_len=1, max_len=12, n_train=200, n_val=20, n_test=20,
            ood_min_len=13, ood_max_len=16, n_test_ood=40)  # fmt: skip
    corpus = generate_corpus(NO_AA_ENDS_B, c, seed=0)
    for name in SPLITS:
        assert corpus.labels(name).all()
        assert all(NO_AA_ENDS_B.accepts(s) for s in corpus.strings(name))
    everything = [s for name in SPLITS for s in corpus.strings(name)]
    assert len(everything) == len(set(everything)) == 280


def test_positives_mode_without_enough_accepted_strings_says_so() -> None:
    # 1* has one string per length: lengths 1-5 hold 5.
    c = cfg(alphabet="01", sampling="positives", min_len=1, max_len=5, n_train=4, n_val=1,
            n_test=1, n_test_ood=0)  # fmt: skip
    with pytest.raises(CorpusError, match="need 6 distinct positive strings.*only 5"):
        generate_corpus(ONLY_ONES, c, seed=0)
    c = cfg(alphabet="ab", sampling="positives", min_len=3, max_len=3, n_train=1, n_val=1,
            n_test=1, n_test_ood=0)  # fmt: skip
    with pytest.raises(CorpusError, match="no accepted strings.*use sampling = uniform"):
        generate_corpus(AB_STAR, c, seed=0)
