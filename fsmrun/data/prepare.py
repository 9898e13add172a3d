"""A run's data stage: language -> minimal DFA (`lang.build`) -> corpus (`sampling`, cached) ->
tensors on the device (`encoding`)."""

from __future__ import annotations

from pathlib import Path

import torch

from fsmrun.data.encoding import RunData, encode_corpus
from fsmrun.data.sampling import Corpus, load_or_generate_corpus
from fsmrun.lang.build import build_dfa
from fsmrun.lang.fsm import DFA
from fsmrun.schemas.config import ExperimentConfig


def build_corpus(
    exp: ExperimentConfig, cache_dir: Path | None, *, dfa: DFA | None = None
) -> tuple[DFA, Corpus]:
    """The experiment's DFA (`dfa` when the caller built it already) and corpus (read from or
    written to `cache_dir`; None: no cache).

    Raises the user errors of a language that cannot be built or a corpus that cannot be filled.
    """
    dfa = dfa if dfa is not None else build_dfa(exp.data)
    return dfa, load_or_generate_corpus(dfa, exp.data, exp.seed, cache_dir)


def build_data(
    exp: ExperimentConfig,
    device: torch.device,
    cache_dir: Path | None,
    *,
    dfa: DFA | None = None,
) -> RunData:
    """DFA (built here unless handed in), corpus and every split encoded on `device`."""
    dfa, corpus = build_corpus(exp, cache_dir, dfa=dfa)
    return encode_corpus(corpus, dfa, device, exp.data.task)
