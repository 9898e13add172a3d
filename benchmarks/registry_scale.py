"""The registry at scale: N synthetic run folders copied from one real run, and the median
wall time and peak memory of `ls`, `ls --json`, `report`, `show`, `sweep status` and the
reindex over them, each in a fresh process.

    python benchmarks/registry_scale.py 100000 [--root /tmp/fsmrun-scale] [--runs 3]

The first call trains one tiny real run, then writes N run folders (JSON files only, no
checkpoints) whose configs vary language, learning rate and seed: the cells of one sweep over
N // 6 language TOMLs x 2 learning rates x 3 seeds, so `sweep status` has a sweep to read.
The folders are kept under --root/N and reused by later calls (100,000 take ~2 GB and some
minutes to write). Targets at N = 100,000 (wall, on an idle machine): ls < 1 s, ls --json
< 3 s with memory flat in N, report < 2 s, show < 0.5 s, reindex < 60 s. CPU seconds are
printed too: on a loaded machine they say more than the wall time. The machine's speed is
measured before and after (a fixed loop in a fresh interpreter), since it drifts here.

The reindex reads every folder's files: right after they were written (and in the table this
prints) they are in the page cache. `--cold` drops the page cache before each reindex
(`echo 1 > /proc/sys/vm/drop_caches`, root only), so the files are read from the disk.

Python's bytecode cache is on for the commands, as an installed package has it (as in
benchmarks/cli_startup.py); one untimed run writes it first. Peak memory is the process's
resident set: `report` maps the index file read-only, and the pages it touches count there
although they are the page cache's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

FSMRUN = [sys.executable, "-c", "from fsmrun.cli import main; main()"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TINY = [
    "--epochs", "1", "--set", "data.n_train=200", "--set", "data.n_val=50",
    "--set", "data.n_test=50", "--set", "data.n_test_ood=50",
    "--set", "model.d_model=16", "--set", "model.d_ff=32",
]  # fmt: skip
LRS = (1e-3, 3e-3)
SEEDS = (0, 1, 2)
SWEEP = "scale"


def seed_run(base: Path) -> Path:
    """The folder of one real (tiny) completed run of regex_a, trained once."""
    runs = sorted(base.glob("seed/regex_a/*/v1/metrics.json"))
    if runs:
        return runs[0].parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*FSMRUN, "train", "regex_a", *TINY, "--results-dir", str(base / "seed")]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return sorted(base.glob("seed/regex_a/*/v1/metrics.json"))[0].parent


def toml_of(config: dict) -> str:
    """A flat TOML text of a config dict (tables for data, model, train)."""

    def value(v: object) -> str:
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for table, fields in config.items():
        if isinstance(fields, dict):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def word(k: int) -> str:
    """A distinct word over {a, b} for each k: 'b' then k in binary with a for 0, b for 1."""
    return "b" + format(k, "b").replace("0", "a").replace("1", "b")


def build(root: Path, n: int, real: Path) -> None:
    """N run folders (one per cell of the sweep SWEEP) and the sweep's record under `root`."""
    from fsmrun.sweeps import coordinator as sweep
    from fsmrun.sweeps.spec import expand, inline_spec

    per_language = len(LRS) * len(SEEDS)
    n_languages = -(-n // per_language)
    config = json.loads((real / "config.json").read_text())
    langs = root.parent / f"{root.name}-languages"
    langs.mkdir(parents=True, exist_ok=True)
    sources = []
    for k in range(n_languages):
        path = langs / f"lang_{k:05d}.toml"
        if not path.exists():
            # Each language its own: the base regex or one extra word, so every file is a
            # distinct config (a file that differs only in its name hashes the same).
            data = {**config["data"], "regex": f"{config['data']['regex']}|{word(k)}"}
            doc = {**config, "name": f"lang_{k:05d}", "description": "synthetic", "data": data}
            path.write_text(toml_of(doc))
        sources.append(str(path))
    spec = inline_spec(sources, {"train.lr": list(LRS)}, list(SEEDS), {}, SWEEP)
    cells = expand(spec)[:n]
    record = json.loads((real / "run.json").read_text())
    metrics = json.loads((real / "metrics.json").read_text())
    env_text = (real / "env.json").read_text()
    rng = random.Random(0)
    start = time.time() - n
    for i, cell in enumerate(cells):
        name, chash = cell.config.name, cell.config_hash
        run_id = f"{name}-{chash[:12]}-v1"
        folder = root / name / chash[:12] / "v1"
        folder.mkdir(parents=True, exist_ok=True)
        created = start + i
        record.update(
            run_id=run_id, experiment=name, config_hash=chash, created=created,
            updated=created + 5, heartbeat=created + 5,
        )  # fmt: skip
        record["hashes"]["config"] = chash
        acc = round(rng.uniform(0.5, 1.0), 4)
        metrics.update(run_id=run_id, experiment=name)
        metrics["best"]["test"]["string_acc"] = acc
        metrics["best"]["test_ood"]["string_acc"] = round(acc * rng.uniform(0.6, 1.0), 4)
        (folder / "run.json").write_text(json.dumps(record, indent=2))
        (folder / "config.json").write_text(cell.config.model_dump_json(indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (folder / "env.json").write_text(env_text)
    sweep.write_record(root, sweep.sweep_status(root, spec, cells, None))


def timed(argv: list[str], root: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, its worker processes included) and peak
    resident MB of one fresh `fsmrun` process (output discarded). On a loaded machine the
    CPU seconds say more than the wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*FSMRUN, *argv, "--results-dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fsmrun {' '.join(argv)} failed: {err}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # kB on Linux


def drop_page_cache() -> None:
    """Empty the kernel's page cache (root only), so the next reads go to the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as exc:
        raise SystemExit(f"--cold needs root to drop the page cache ({exc.strerror})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="number of run folders")
    parser.add_argument("--root", type=Path, default=Path("/tmp/fsmrun-scale"))
    parser.add_argument("--runs", type=int, default=3, help="timed runs per command")
    parser.add_argument("--reindex-runs", type=int, default=1, help="0: keep the index as is")
    parser.add_argument(
        "--cold", action="store_true", help="drop the page cache before each reindex (root)"
    )
    parser.add_argument("--build-only", action="store_true", help="write the folders, time nothing")
    parser.add_argument("--only", help="comma-separated commands to time, e.g. 'ls,show'")
    args = parser.parse_args()
    base = args.root
    root = base / str(args.n)
    marker = root / ".built"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        build(root, args.n, seed_run(base))
        marker.write_text(str(args.n))
        print(f"built {args.n} run folders under {root} in {time.perf_counter() - t0:.0f} s")
    if args.build_only:
        return
    first = sorted(root.glob("lang_00000/*/v1"))[0]
    run_id = json.loads((first / "run.json").read_text())["run_id"]
    commands = {
        "reindex": (["ls", "--reindex", "--limit", "1"], args.reindex_runs),
        "ls": (["ls"], args.runs),
        "ls --json": (["ls", "--json"], args.runs),
        "report": (["report", "--by", "language,train.lr", "--json"], args.runs),
        "report --by language": (["report", "--by", "language"], args.runs),
        "show": (["show", run_id], args.runs),
        "show PREFIX": (["show", run_id[:14]], args.runs),
        "sweep status": (["sweep", "status", SWEEP], args.runs),
    }
    for argv in (["ls", "--limit", "1"], ["report", "--where", "language=none", "--json"]):
        timed(argv, root)  # writes the bytecode cache; not timed
    print(f"N = {args.n}; median of {args.runs} fresh processes (reindex: {args.reindex_runs})")
    print(f"machine speed: {speed_probe():.2f} s for {PROBE} (lower is faster)", flush=True)
    print(f"{'command':<22} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}")
    for name, (argv, runs) in commands.items():
        if runs == 0 or (args.only and name not in args.only.split(",")):
            continue
        results = []
        for _ in range(runs):
            if name == "reindex" and args.cold:
                drop_page_cache()
            results.append(timed(argv, root))
        wall = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        peak = max(r[2] for r in results)
        if name == "reindex" and args.cold:
            name = "reindex (cold)"
        print(f"{name:<22} {wall:7.2f} {cpu:7.2f} {peak:8.0f}", flush=True)
    print(f"machine speed: {speed_probe():.2f} s for {PROBE} (after)")


PROBE = 'python3 -c "sum(range(30000000))"'


def speed_probe() -> float:
    """Seconds of one fixed CPU-bound loop in a fresh interpreter: the same work takes
    different times on a machine whose speed drifts (a shared virtual machine), so each table
    says how fast the machine was while it was taken."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "sum(range(30000000))"], check=True)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
