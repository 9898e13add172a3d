"""Start-up time of the light commands (help, ls, show, experiments, fsm, report, diff,
sweep status, plot of a run without captures), each in a fresh interpreter, and whether any
of them loaded torch; prints the median of several runs and its CPU time (user + sys, which
a busy machine inflates less than wall time).

    python benchmarks/cli_startup.py [--runs 7] [--no-bytecode]

Target: each under 0.4 s median, idle. plot has none: it draws with matplotlib, so it is
slower; what it checks is that torch stays out.

Python's bytecode cache is on for the commands, as an installed package has it (pip compiles
on install; an editable install writes __pycache__ on first import), in a temporary folder
(PYTHONPYCACHEPREFIX) that the first, unmeasured run of each command fills. Where
PYTHONDONTWRITEBYTECODE is set (many containers), every run compiles every module it imports
from source instead: --no-bytecode measures that.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs a command through the real entry point, then reports whether torch was imported.
# A read-only command ends its process itself when done (os._exit, skipping the teardown):
# the probe reports just before.
_PROBE = """
import os, sys
sys.argv = ["fsmrun", *sys.argv[1:]]
end = os._exit
def report(code=None):
    sys.stderr.write("TORCH=%s\\n" % ("torch" in sys.modules))
    if code is not None:
        sys.stderr.flush()
        end(code)
os._exit = report
from fsmrun.cli import main
try:
    main()
except SystemExit:
    pass
report()
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
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module on every run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        env = dict(os.environ)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
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
        bytecode = "off (--no-bytecode)" if args.no_bytecode else "cached"
        print(f"median of {args.runs} runs each; bytecode {bytecode}; target: under 0.4 s idle")
        print(f"{'command':<13} {'median s':>9} {'min s':>7} {'CPU s':>7}  torch loaded")
        for name, argv in commands.items():
            times, cpu, torch_loaded = [], [], False
            for _ in range(args.runs + 1):  # the first run warms the file and bytecode caches
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env
                )
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                torch_loaded |= "TORCH=True" in proc.stderr
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed: {proc.stderr}")
            times, cpu = times[1:], cpu[1:]
            print(
                f"{name:<13} {statistics.median(times):9.3f} {min(times):7.3f} "
                f"{statistics.median(cpu):7.3f}  {torch_loaded}"
                + ("  (no target: matplotlib)" if name == "plot" else "")
            )


if __name__ == "__main__":
    main()
