"""Wall time of `fsmrun analyze RUN`, each in a fresh interpreter (imports included), and how
many strings the model labelled; prints medians of several runs.

    python benchmarks/analyze_speed.py RUN [--results-dir results] [--runs 3]
    (target: a parity LSTM run with the shipped defaults under 30 s median; train one with
    `fsmrun train parity --device cpu`)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run id, prefix or folder")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls, extraction, strings, calls = [], [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "fsmrun", "analyze", args.run, "--json", "--force",
             "--results-dir", args.results_dir],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        walls.append(time.perf_counter() - start)
        report = json.loads(done.stdout)
        extraction.append(report["extraction"]["seconds"])
        strings.append(report["extraction"]["model_strings"])
        calls.append(report["extraction"]["model_calls"])
    print(f"analyze {report['run_id']}: {args.runs} runs")
    print(f"  wall (fresh interpreter)  median {statistics.median(walls):6.1f} s")
    print(f"  extraction                median {statistics.median(extraction):6.1f} s")
    print(f"  model strings labelled    {strings[-1]:,} in {calls[-1]} batched calls")
    status = report["extraction"]["status"]
    states = report["extraction"]["num_states"]
    print(f"  extracted: {states} states, {status}")


if __name__ == "__main__":
    main()
