"""Kill -9 soak: N trials of `fsmrun train` killed at a random moment of the run's life (seeded:
a delay drawn uniformly from the reference run's time from the start of its version claim to
its exit, counted from the trial's claim; before it the process only starts up and caches the
corpus), each resumed with `fsmrun resume` (or trained again when no run folder was claimed
yet) and compared with a run
never killed: weights, optimizer and meta of last.pt and best.pt, history (clock fields aside),
metrics.json (wall time aside). Prints `exact k/N, corrupt files c, failed resumes f`.

    python benchmarks/kill_soak.py --trials 20 [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fsmrun.runs.layout import iter_run_folders
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import TIMING_FIELDS
from fsmrun.train.checkpoint import CheckpointError, read_ckpt
from fsmrun.train.history import read_history

TOML = """\
name = "soak"
seed = 5

[data]
regex = "(a|b)*ab"
alphabet = "ab"
min_len = 1
max_len = 8
ood_min_len = 9
ood_max_len = 10
n_train = 64
n_val = 16
n_test = 16
n_test_ood = 16

[model]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32

[train]
epochs = 4
batch_size = 16
lr = 0.003
warmup_steps = 2
log_every = 2
save_every = 3
patience = 2
"""


def fsmrun(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "fsmrun", *map(str, args), "--device", "cpu", "--no-progress"]


def train_cmd(toml: Path, root: Path) -> list[str]:
    return fsmrun("train", toml, "--results-dir", root)


def wait_for_claim(root: Path, proc: subprocess.Popen) -> float:
    """When the run's version claim starts (its experiment folder appears); polls every 5 ms."""
    while not (root / "soak").exists() and proc.poll() is None:
        time.sleep(0.005)
    return time.monotonic()


def the_run(root: Path) -> Path | None:
    folders = list(iter_run_folders(root))
    return folders[0] if folders else None


def corrupt_files(run_dir: Path) -> int:
    """Files a reader would find damaged: checkpoints failing verification, JSON files that do
    not parse, history lines (before a torn tail) that are not JSON."""
    bad = 0
    for path in sorted((run_dir / "checkpoints").glob("*.pt")):
        try:
            read_ckpt(path, fallback=False)
        except CheckpointError:
            bad += 1
    for path in sorted(run_dir.glob("*.json")):
        try:
            json.loads(path.read_text())
        except ValueError:
            bad += 1
    history = run_dir / "logs" / "history.jsonl"
    if history.exists():
        for line in history.read_text().split("\n")[:-1]:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
                break
    return bad


def saved_step(run_dir: Path) -> int | None:
    try:
        return json.loads(read_ckpt(run_dir / "checkpoints" / "last.pt")[1]["meta"])["step"]
    except CheckpointError:
        return None


def fingerprint(run_dir: Path) -> dict:
    """What must be identical to the uninterrupted run."""
    out: dict = {}
    for name in ("last.pt", "best.pt"):
        inner = read_ckpt(run_dir / "checkpoints" / name, fallback=False)[1]
        meta = json.loads(inner["meta"])
        meta.pop("wall_time_s")
        out[name] = (inner["model"], inner["optimizer"], meta)
    out["history"] = [
        r.model_dump(exclude=set(TIMING_FIELDS))
        for r in read_history(run_dir / "logs/history.jsonl")
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("wall_time_s")
    out["metrics"] = metrics
    return out


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the trial folders here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="kill_soak-"))
    work.mkdir(parents=True, exist_ok=True)
    toml = work / "soak.toml"
    toml.write_text(TOML)
    started = time.monotonic()

    proc = subprocess.Popen(train_cmd(toml, work / "reference"), stdout=subprocess.DEVNULL)
    claimed = wait_for_claim(work / "reference", proc)
    if proc.wait() != 0:
        raise SystemExit("the reference run failed")
    duration = time.monotonic() - claimed
    reference = fingerprint(the_run(work / "reference"))  # type: ignore[arg-type]
    print(f"reference run: {duration:.1f}s from its claim to its exit", flush=True)

    rng = random.Random(args.seed)
    exact = corrupt = failed = 0
    for trial in range(args.trials):
        root = work / f"trial{trial:03d}"
        delay = rng.uniform(0.0, duration)
        proc = subprocess.Popen(
            train_cmd(toml, root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_claim(root, proc)
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        run_dir = the_run(root)
        where = "no run folder yet"
        ok = True
        if run_dir is not None:
            corrupt += corrupt_files(run_dir)
            where = f"{RunFolder(run_dir).status()}, last.pt at step {saved_step(run_dir)}"
            if RunFolder(run_dir).status() != "completed":
                done = subprocess.run(
                    fsmrun("resume", run_dir, "--results-dir", root), capture_output=True, text=True
                )
                if done.returncode != 0:
                    failed += 1
                    ok = False
                    where += f"; resume failed: {done.stderr.strip().splitlines()[-1:]}"
        else:
            subprocess.run(train_cmd(toml, root), check=True, capture_output=True)
            run_dir = the_run(root)
        match = ok and run_dir is not None and same(fingerprint(run_dir), reference)
        exact += match
        state = "killed" if killed else "finished"
        print(
            f"trial {trial + 1:>3}: {state} {delay:5.2f}s after its claim ({where}): "
            f"{'exact' if match else 'DIFFERENT'}",
            flush=True,
        )
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"exact {exact}/{args.trials}, corrupt files {corrupt}, failed resumes {failed}")
    print(f"wall time {time.monotonic() - started:.1f}s")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
