"""Length bucketing on and off: OOD accuracy over seeds and training time, per experiment.

Trains each experiment with `train.bucket_by_length` false and true for every seed (in this
process, one run at a time, CPU), and prints per setting the OOD accuracy of the checkpoint the
run reports (string accuracy, or char accuracy for character prediction) as min / median /
max over seeds, the median training wall time and the speed-up (off / on).

    OMP_NUM_THREADS=1 python benchmarks/bucketing.py [--experiments parity,tomita3_cp]
        [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile

from rich.console import Console

from fsmrun.base.overrides import apply_overrides
from fsmrun.experiments import load_experiment
from fsmrun.train.loop import train_one_experiment

DEFAULT = "parity,even_pairs,tomita3_cp,tomita5_cp,tomita6_cp"


def ood_accuracy(result, task: str) -> float:
    metrics = result.metrics
    checkpoint = metrics.best if metrics.evaluated == "best" else metrics.last
    ood = checkpoint.test_ood
    return ood.char_acc if task == "char_prediction" else ood.string_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", default=DEFAULT)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("experiment   bucketing  OOD acc min/median/max   train s (median)  speed-up")
    with tempfile.TemporaryDirectory() as root:
        for name in args.experiments.split(","):
            base = load_experiment(name)
            times: dict[bool, float] = {}
            for bucket in (False, True):
                accs, walls = [], []
                for seed in seeds:
                    exp = apply_overrides(base, {"train.bucket_by_length": bucket, "seed": seed})
                    quiet = Console(file=io.StringIO())
                    result = train_one_experiment(
                        exp, device="cpu", results_root=root, console=quiet, progress=False
                    )
                    accs.append(ood_accuracy(result, exp.data.task))
                    walls.append(result.metrics.wall_time_s)
                times[bucket] = statistics.median(walls)
                speed = f"{times[False] / times[True]:.2f}x" if bucket else ""
                print(
                    f"{name:<12} {'on' if bucket else 'off':<10} "
                    f"{min(accs):.3f} / {statistics.median(accs):.3f} / {max(accs):.3f}"
                    f"{'':<6} {times[bucket]:>8.1f}          {speed}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
