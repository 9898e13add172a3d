"""Benchmark compile_regex: median wall time of several runs and peak traced memory.

Usage: python benchmarks/fsm_compile.py [--repeats N]
Targets (issue 2): (a|b)*a(a|b){12} under 0.2 s; (a|b)*a(a|b){16} under 3 s and 200 MB.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc

from fsmrun.lang.fsm import StateLimitError, compile_regex

# (label, pattern, alphabet, max_states, target seconds or None)
CASES = [
    ("8,192 states", "(a|b)*a(a|b){12}", "ab", 10_000, 0.2),
    ("131,072 states", "(a|b)*a(a|b){16}", "ab", 131_072, 3.0),
    ("over the cap (fails fast)", "(a|b)*a(a|b){20}", "ab", 10_000, None),
    ("deep chain (Hopcroft)", "a{5000}", "ab", 10_000, None),
    ("tomita3", "0*((11)+0*|1(11)*(00)+)*1?", "01", 10_000, None),
]


def compile_once(pattern: str, alphabet: str, max_states: int) -> str:
    try:
        return f"{compile_regex(pattern, alphabet, max_states=max_states).num_states:,} states"
    except StateLimitError:
        return "StateLimitError"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header = f"{'case':<27} {'pattern':<28} {'result':<16} {'median s':>9} {'peak MB':>8}  target"
    print(header)
    print("-" * len(header))
    for label, pattern, alphabet, max_states, target in CASES:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = compile_once(pattern, alphabet, max_states)
            times.append(time.perf_counter() - start)
        tracemalloc.start()  # separate run: tracing slows allocation-heavy code
        compile_once(pattern, alphabet, max_states)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        median = statistics.median(times)
        verdict = "" if target is None else f"< {target} s: {'ok' if median < target else 'MISS'}"
        print(f"{label:<27} {pattern:<28} {result:<16} {median:>9.3f} {peak_mb:>8.1f}  {verdict}")
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process max RSS (interpreter and numpy included): {max_rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
