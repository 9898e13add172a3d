"""Corpus generation speed: 100,000 strings of length 1..64 (target: median under 2 s).

Usage: python benchmarks/datagen_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from fsmrun.data.sampling import generate_corpus
from fsmrun.lang.fsm import compile_regex
from fsmrun.schemas.config import DataConfig

LANGUAGES = {
    "no 'aa', ends with b": ("(b|ab)+", "ab"),
    "(ab|ba)*c?": ("(ab|ba)*c?", "abc"),
    "tomita3": ("0*((11)+0*|1(11)*(00)+)*1?", "01"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for label, (regex, alphabet) in LANGUAGES.items():
        data = DataConfig(
            regex=regex,
            alphabet=alphabet,
            min_len=1,
            max_len=64,
            n_train=80_000,
            n_val=10_000,
            n_test=10_000,
            n_test_ood=0,
        )
        dfa = compile_regex(regex, alphabet)
        times = []
        for run in range(args.runs):
            start = time.perf_counter()
            corpus = generate_corpus(dfa, data, seed=run)
            times.append(time.perf_counter() - start)
        total = sum(corpus.num_strings(s) for s in ("train", "val", "test"))
        print(
            f"{label:22s} {total} strings, lengths 1..64: median {statistics.median(times):.3f} s "
            f"over {args.runs} runs (min {min(times):.3f}, max {max(times):.3f})"
        )


if __name__ == "__main__":
    main()
