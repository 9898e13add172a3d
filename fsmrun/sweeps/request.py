"""What a `fsmrun sweep` command line asks for, decided here so the command only parses and
renders: whether its arguments name a spec (a built-in suite or a sweep TOML) or experiments,
the spec with --grid/--seeds/--set/--name applied, the executor of a backend, and the record a
`sweep status` reference names (a sweep's name or id, else a spec's cells read from disk)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fsmrun.base.overrides import parse_assignment
from fsmrun.experiments import parse_toml
from fsmrun.schemas.sweep import SweepRecord, SweepSpec
from fsmrun.sweeps.coordinator import (
    find_sweep,
    read_record,
    record_path,
    refresh,
    sweep_id_for,
    sweep_status,
)
from fsmrun.sweeps.executors import (
    Executor,
    RayExecutor,
    SerialExecutor,
    threads_per_worker,
)
from fsmrun.sweeps.pool import LocalExecutor
from fsmrun.sweeps.spec import (
    SweepError,
    expand,
    inline_spec,
    list_suites,
    load_spec,
    parse_grid,
    parse_seeds,
    read_spec_text,
)

BACKENDS = ("local", "ray")


def is_spec(arg: str) -> bool:
    """Whether `arg` names a sweep spec: a built-in suite, or a TOML file holding an
    `experiments` list (an experiment TOML has none). A file that cannot be read as text
    counts as a spec, so that its error names it as one."""
    if arg in list_suites():
        return True
    if arg.endswith(".toml") and Path(arg).is_file():
        try:
            doc = parse_toml(read_spec_text(Path(arg)), arg)
            return "experiments" in doc or "languages" in doc
        except SweepError:  # unreadable, not UTF-8, binary
            return True
        except ValueError:  # malformed TOML: not a spec (the experiment loader says why)
            return False
    return False


def spec_from_args(
    args: list[str],
    grid: list[str],
    seeds: str | None,
    sets: list[str],
    name: str | None,
    languages: str | None = None,
    symbols: str | None = None,
) -> SweepSpec:
    """A spec (a file or suite, with --grid/--seeds/--set/--name/--languages applied) when the
    one argument names one, else an inline sweep over the experiments (and language files)
    given."""
    if not args and languages is None:
        raise SweepError("give a sweep spec, a suite (fsmrun sweep --list) or experiments")
    overrides = {o.key: o.value for o in map(parse_assignment, sets)}
    files = {k: v for k, v in (("languages", languages), ("symbols", symbols)) if v is not None}
    if len(args) == 1 and is_spec(args[0]):
        spec = load_spec(args[0])
        update: dict[str, Any] = {
            "set": {**spec.set, **overrides},
            "grid": {**spec.grid, **parse_grid(grid)},
            **files,
        }
        if seeds is not None:
            update["seeds"] = parse_seeds(seeds)
        if name is not None:
            update["name"] = name
        return SweepSpec.model_validate({**spec.model_dump(), **update})
    chosen = parse_seeds(seeds) if seeds is not None else [0]
    return inline_spec(args, parse_grid(grid), chosen, overrides, name, **files)


def make_executor(
    backend: str,
    workers: int | None = None,
    address: str | None = None,
    cpus_per_task: int | None = None,
) -> Executor:
    """The executor of `backend`: in process for one local worker, a process pool for more,
    Ray (a local instance, or the cluster at `address`) with its CPUs per cell."""
    if backend not in BACKENDS:
        raise SweepError(f"--backend must be local or ray, got {backend!r}")
    cores = os.cpu_count() or 1
    workers = workers or cores
    if backend == "ray":
        default = 1 if address else threads_per_worker(workers, cores)
        return RayExecutor(address, num_cpus=cores, cpus_per_task=cpus_per_task or default)
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)


def status_record(root: Path, ref: str) -> SweepRecord:
    """The state of the sweep `ref` names: its sweep.json refreshed from the run folders; for
    a spec or suite never run here, its cells' state read from the run folders. Writes
    nothing."""
    try:
        return refresh(root, read_record(find_sweep(root, ref)))
    except SweepError:
        if not is_spec(ref):
            raise
    spec = load_spec(ref)
    cells = expand(spec)
    path = record_path(root, sweep_id_for(spec, cells))
    return sweep_status(root, spec, cells, read_record(path) if path.is_file() else None)
