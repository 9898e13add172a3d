"""Start-up time of the light commands (help, ls, show, experiments, fsm, report, diff,
sweep status, plot of a run without captures), each in a fresh interpreter, and whether any
of them loaded torch; prints the median of several runs.

    python benchmarks/cli_startup.py [--runs 7]   (target: each under 0.4 s median, idle;
    plot loads matplotlib, so it is slower: what it checks is that torch stays out)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs a command through the real entry point, then reports whether torch was imported.
_PROBE = """
import sys
sys.argv = ["fsmrun", *sys.argv[1:]]
from fsmrun.cli import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("TORCH=%s\\n" % ("torch" in sys.modules))
"""


def make_run(root: Path) -> str:
    """A results folder with one (fake, finished) run for `ls` and `show`; its id."""
    from fsmrun.experiments import load_experiment
    from fsmrun.runs.run_folder import RunFolder
    from fsmrun.schemas.records import RunRecord

    exp = load_experiment("regex_a")
    folder = RunFolder(root / exp.name / "0123456789ab" / "v1")
    now = time.time()
    record = RunRecord(
        run_id=f"{exp.name}-0123456789ab-v1",
        experiment=exp.name,
        config_hash="0123456789ab" * 5,
        version=1,
        status="completed",
        command=["fsmrun"],
        device="cpu",
        amp=False,
        deterministic=True,
        created=now,
        updated=now,
        heartbeat=now,
        pid=None,
        hostname="bench",
    )
    folder.write_record(record)
    folder.write_config(exp)
    return record.run_id


def make_sweep(root: Path) -> str:
    """The record of a small sweep of regex_a (its cells to do); its name."""
    from fsmrun.sweeps import coordinator as sweep
    from fsmrun.sweeps.spec import expand, inline_spec

    spec = inline_spec(["regex_a"], {"model.arch": ["transformer", "lstm"]}, [0, 1], {}, None)
    sweep.write_record(root, sweep.sweep_status(root, spec, expand(spec), None))
    return spec.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_id = make_run(root)
        sweep_name = make_sweep(root)
        commands = {
            "--help": ["--help"],
            "ls": ["ls", "--results-dir", str(root)],
            "show": ["show", run_id, "--results-dir", str(root)],
            "experiments": ["experiments"],
            "fsm": ["fsm", "(a|b)*ab", "--alphabet", "ab"],
            "report": ["report", "--results-dir", str(root)],
            "diff": ["diff", run_id, run_id, "--results-dir", str(root)],
            "sweep status": ["sweep", "status", sweep_name, "--results-dir", str(root)],
            "plot": ["plot", run_id, "--results-dir", str(root)],
        }
        print(f"{'command':<13} {'median s':>9} {'min s':>7}  torch loaded")
        for name, argv in commands.items():
            times, torch_loaded = [], False
            for _ in range(args.runs + 1):  # the first run warms the file cache
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True
                )
                times.append(time.perf_counter() - start)
                torch_loaded |= "TORCH=True" in proc.stderr
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed: {proc.stderr}")
            times = times[1:]
            print(f"{name:<13} {statistics.median(times):9.3f} {min(times):7.3f}  {torch_loaded}")


if __name__ == "__main__":
    main()
