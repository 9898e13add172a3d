"""The data stage: one door from a data config to its DFA, the corpus, tensors on a device."""

from __future__ import annotations

import torch

from fsmrun.data.encoding import encode_corpus
from fsmrun.data.prepare import build_corpus, build_data
from fsmrun.data.sampling import generate_corpus
from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import compile_regex
from fsmrun.schemas.config import DataConfig, ExperimentConfig


def data_cfg(**kw) -> DataConfig:
    base = {"regex": "(a|b)*ab", "alphabet": "ab", "min_len": 1, "max_len": 6, "ood_min_len": 7,
            "ood_max_len": 8, "n_train": 16, "n_val": 4, "n_test": 4, "n_test_ood": 0}  # fmt: skip
    return DataConfig(**{**base, **kw})


def test_build_dfa_of_a_regex_is_its_minimal_dfa():
    dfa = build_dfa(data_cfg())
    assert dfa.num_states == 3 and dfa.accepts("bab") and not dfa.accepts("ba")
    assert dfa.to_json() == compile_regex("(a|b)*ab", "ab").to_json()


def test_build_corpus_caches_and_reads_back_the_same_corpus(tmp_path):
    exp = ExperimentConfig(name="x", seed=1, data=data_cfg())
    _, first = build_corpus(exp, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    _, again = build_corpus(exp, tmp_path)
    assert again == first == generate_corpus(build_dfa(exp.data), exp.data, 1)


def test_encoding_takes_the_corpus_handed_in_and_skips_an_empty_ood_split():
    cfg = data_cfg()
    dfa = build_dfa(cfg)
    corpus = generate_corpus(dfa, cfg, seed=0)
    data = encode_corpus(corpus, dfa, "cpu")
    assert sorted(data.splits) == ["test", "train", "val"]
    assert data.splits["train"].num_strings == 16
    assert data.corpus_hash == corpus.fingerprint()
    exp = ExperimentConfig(name="x", seed=0, data=cfg)
    built = build_data(exp, torch.device("cpu"), None)
    assert torch.equal(built.splits["val"].input_ids_nxt, data.splits["val"].input_ids_nxt)
