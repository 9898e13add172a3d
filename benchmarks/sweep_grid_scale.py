"""A benchmark-sized sweep: 1,800 language files (synthetic 4-state AT&T automata with a symbol
table, MLRegTest's layout) x 4 architectures x 3 seeds = 21,600 cells. Prints the median
seconds to expand the grid, to write its record (every cell's state read from the registry)
and to answer `fsmrun sweep status` in a fresh process, wall and CPU (user + sys; a busy
machine inflates wall time, much less CPU time).

    python benchmarks/sweep_grid_scale.py [--languages 1800] [--runs 3]   (target: < 2 s each)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ARCHS = ["transformer", "lstm", "gru", "rnn"]
SEEDS = [0, 1, 2]


def write_languages(folder: Path, count: int) -> None:
    """`count` random 4-state automata over {a, b} as AT&T transducer files, and alph.txt."""
    rng = random.Random(0)
    for k in range(count):
        arcs = [f"{q}\t{rng.randrange(4)}\t{s}\t{s}" for q in range(4) for s in "ab"]
        finals = [str(q) for q in range(4) if rng.random() < 0.5] or ["0"]
        (folder / f"04.04.SL.{k // 100}.1.{k % 100}.att").write_text("\n".join(arcs + finals))
    (folder / "alph.txt").write_text("<EPS>\t0\na\t1\nb\t2\n")


@contextlib.contextmanager
def timed(into: list[tuple[float, float]]) -> Iterator[None]:
    """Append (wall, CPU) seconds of the block: this process's and its children's CPU."""

    def cpu() -> float:
        own, children = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall, used = time.perf_counter(), cpu()
    yield
    into.append((time.perf_counter() - wall, cpu() - used))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", type=int, default=1800)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from fsmrun.schemas.sweep import SweepSpec
    from fsmrun.sweeps import coordinator as sweep

    with tempfile.TemporaryDirectory() as tmp:
        folder, root = Path(tmp) / "languages", Path(tmp) / "results"
        folder.mkdir()
        write_languages(folder, args.languages)
        spec = SweepSpec(
            name="mlregtest",
            experiments=["regex_a"],
            languages=str(folder / "*.att"),
            symbols=str(folder / "alph.txt"),
            grid={"model.arch": ARCHS},
            seeds=SEEDS,
        )
        timings: dict[str, list[tuple[float, float]]] = {
            "expand": [], "write record": [], "sweep status": []
        }  # fmt: skip
        for _ in range(args.runs):
            with timed(timings["expand"]):
                cells = sweep.expand(spec)
            with timed(timings["write record"]):
                sweep.write_record(root, sweep.sweep_status(root, spec, cells, None))
            with timed(timings["sweep status"]):
                subprocess.run(
                    [sys.executable, "-c", "from fsmrun.cli import main; main()", "sweep",
                     "status", spec.name, "--json", "--results-dir", str(root)],
                    check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
        print(f"{len(cells)} cells ({args.languages} languages x {len(ARCHS)} x {len(SEEDS)})")
        for name, values in timings.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(f"{name:<14} {wall:6.2f} s wall, {cpu:5.2f} s CPU (median of {args.runs})")
        print(f"target < 2 s each; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
