"""Soak test of the sweep layer: kill the coordinator or its workers at random moments, run the
same command again, and check what a user relies on.

    python benchmarks/sweep_soak.py --trials 20

Each trial runs `fsmrun sweep` (4 tiny cells, --workers 2, --threads 1) in a fresh results
folder and, at a random moment, does one of: kill -9 of the coordinator's pid, kill -9 of its
process group, kill -9 of one worker, SIGINT to the coordinator. It then waits for the
coordinator's processes to go, re-runs the same command until it exits 0, and compares every
cell with a plain training of its config at 1 thread. Prints
`cells exact k/N, duplicates d, orphans o, lost l`:
exact: final weights and metrics bit-identical to the plain training; duplicates: run folders
beyond one per cell; orphans: processes of a killed coordinator alive 15 s after the kill;
lost: cells not done after the re-runs. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from fsmrun.analysis.audit import final_state_dict
from fsmrun.schemas.records import Metrics
from fsmrun.schemas.sweep import SweepRecord
from fsmrun.sweeps.spec import expand, load_spec
from fsmrun.train.loop import train_one_experiment

TINY = """\
name = "soak"
experiments = ["{exp}"]
seeds = [0, 1, 2, 3]
[set]
"train.epochs" = 6
"train.patience" = 100
"""
EXPERIMENT = """\
name = "soaktiny"
[data]
regex = "(a|b)*ab"
alphabet = "ab"
max_len = 7
ood_min_len = 8
ood_max_len = 9
n_train = 64
n_val = 16
n_test = 16
n_test_ood = 16
[model]
arch = "lstm"
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32
[train]
epochs = 6
batch_size = 16
warmup_steps = 1
log_every = 4
"""
ORPHAN_WAIT_S = 15.0
FSMRUN = str(Path(sys.executable).parent / "fsmrun")
ACTIONS = ("kill coordinator", "kill group", "kill worker", "sigint coordinator")


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def same_bits(a: Path, b: Path) -> bool:
    wa, wb = final_state_dict(a), final_state_dict(b)
    if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
        return False
    ma = Metrics.model_validate_json((a / "metrics.json").read_text())
    mb = Metrics.model_validate_json((b / "metrics.json").read_text())
    return ma.best == mb.best and ma.last == mb.last


def trial(args: list[str], root: Path, rng: random.Random, allowed: list[str]) -> tuple[str, int]:
    """One kill at a random moment; returns the action and the orphans left after it."""
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    action = rng.choice(allowed)
    deadline = time.monotonic() + rng.uniform(1.0, 12.0)
    seen: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.1)
    if proc.poll() is not None:
        return "finished first", 0
    seen |= descendants(proc.pid)
    if action == "kill coordinator":
        os.kill(proc.pid, signal.SIGKILL)
    elif action == "kill group":
        os.killpg(proc.pid, signal.SIGKILL)
    elif action == "sigint coordinator":
        os.kill(proc.pid, signal.SIGINT)
    else:
        late = time.monotonic() + 30  # a worker may still be starting: wait for one
        workers = []
        while not workers and time.monotonic() < late and proc.poll() is None:
            workers = [p for p in descendants(proc.pid) if alive(p) and _is_worker(p)]
            time.sleep(0.1)
        if proc.poll() is not None:
            return "finished first", 0
        if not workers:
            action = "kill coordinator (no worker yet)"
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.kill(rng.choice(workers), signal.SIGKILL)
            proc.wait(300)  # the sweep goes on without it
            return action, 0
    proc.wait(60)
    killed = time.monotonic()
    while any(alive(p) for p in seen) and time.monotonic() - killed < ORPHAN_WAIT_S:
        time.sleep(0.2)
    orphans = [p for p in seen if alive(p)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    return action, len(orphans)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_worker(pid: int) -> bool:
    """A pool worker: forked from the forkserver (its parent runs forkserver main; a worker's
    command line is its parent's, since it was forked, not executed)."""
    try:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return False
    return "forkserver" in _cmdline(parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actions", default=",".join(ACTIONS), help="comma-separated subset")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    actions_allowed = [a.strip() for a in opts.actions.split(",")]
    with tempfile.TemporaryDirectory(prefix="fsmrun-soak-") as tmp:
        exp = Path(tmp) / "soaktiny.toml"
        exp.write_text(EXPERIMENT)
        spec_file = Path(tmp) / "soak.toml"
        spec_file.write_text(TINY.format(exp=exp))
        cells = expand(load_spec(str(spec_file)))
        torch.set_num_threads(1)
        reference = {
            c.config_hash: train_one_experiment(
                c.config, device="cpu", results_root=Path(tmp) / "ref", progress=False
            ).run_dir
            for c in cells
        }
        exact = duplicates = orphans = lost = 0
        actions: Counter[str] = Counter()
        for n in range(opts.trials):
            root = Path(tmp) / f"t{n}"
            args = [FSMRUN, "sweep", str(spec_file), "--workers", "2", "--threads", "1",
                    "--results-dir", str(root)]  # fmt: skip
            action, left = trial(args, root, rng, actions_allowed)
            actions[action] += 1
            orphans += left
            for _ in range(3):
                if subprocess.run(args, capture_output=True).returncode == 0:
                    break
            record = SweepRecord.model_validate_json(
                next(root.glob("sweeps/*/sweep.json")).read_text()
            )
            for cell in record.cells:
                folders = sorted((root / cell.experiment / cell.config_hash[:12]).glob("v*"))
                duplicates += max(0, len(folders) - 1)
                if cell.status != "done" or not folders:
                    lost += 1
                elif same_bits(folders[-1], reference[cell.config_hash]):
                    exact += 1
            print(f"trial {n + 1}: {action}; orphans {left}", flush=True)
        total = opts.trials * len(cells)
        print(f"actions: {dict(actions)}")
        print(f"cells exact {exact}/{total}, duplicates {duplicates}, orphans {orphans}, "
              f"lost {lost}")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
