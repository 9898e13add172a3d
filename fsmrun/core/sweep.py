"""Sweeps: a spec expanded into cells (one config hash each), their state read from the run
folders, and an idempotent run: done cells skipped, interrupted ones resumed, failed ones
retried only when asked. Only this (coordinating) process writes sweep.json and the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fsmrun.core.executors import CellOutcome, CellTask, Executor
from fsmrun.core.io import atomic_write_json
from fsmrun.core.overrides import OverrideError, apply_overrides, check_key, flatten
from fsmrun.core.registry import (
    HASH_PREFIX_LEN,
    RegistryError,
    RegistryIndex,
    effective_status,
    read_run_record,
)
from fsmrun.experiments import load_experiment
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.sweep import CELL_STATUSES, SweepCell, SweepRecord, SweepSpec

SWEEPS_DIR = "sweeps"
RECORD_FILE = "sweep.json"
SUITES = resources.files("fsmrun.experiments").joinpath("suites")
_RUN_TO_CELL = {"completed": "done", "running": "running", "interrupted": "interrupted"}


class SweepError(ValueError):
    """A sweep spec, name or grid a user can fix."""


@dataclass(frozen=True)
class Cell:
    """One expanded cell: the experiment as given, its overrides and the resulting config."""

    index: int
    experiment: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    config_hash: str


# ---------------------------------------------------------------------------- specs


def list_suites() -> list[str]:
    """Names of the built-in suites (fsmrun/experiments/suites/*.toml), sorted."""
    return sorted(
        e.name.removesuffix(".toml") for e in SUITES.iterdir() if e.name.endswith(".toml")
    )


def parse_spec(text: str, source: str, default_name: str) -> SweepSpec:
    """Validate TOML text as a SweepSpec (SweepError naming `source` and the field)."""
    if sys.version_info < (3, 11):  # pragma: no cover
        raise SweepError("reading sweep specs needs Python 3.11+ (tomllib)")
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{source}: malformed TOML: {err}") from None
    doc.setdefault("name", default_name)
    try:
        spec = SweepSpec.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SweepError(f"{source}: invalid sweep spec: {where}: {first['msg']}") from None
    check_spec_keys(spec)
    return spec


def load_spec(ref: str) -> SweepSpec:
    """A sweep spec from a TOML path or a built-in suite name."""
    if ref.endswith(".toml") or os.sep in ref or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise SweepError(f"no sweep spec file {ref!r}")
        return parse_spec(path.read_text(encoding="utf-8"), str(path), path.stem)
    if ref not in list_suites():
        raise SweepError(
            f"no built-in suite {ref!r} (suites: {', '.join(list_suites())}; "
            "or give a path to a sweep .toml file)"
        )
    text = SUITES.joinpath(f"{ref}.toml").read_text(encoding="utf-8")
    return parse_spec(text, f"suite {ref}", ref)


def check_spec_keys(spec: SweepSpec) -> None:
    """Every override key names a config value (SweepError otherwise)."""
    keys = list(spec.set) + [k for case in spec.cases for k in case] + list(spec.grid)
    for key in keys:
        if key == "seed":
            raise SweepError("set seeds with `seeds` (--seeds), not as an override")
        try:
            check_key(key)
        except OverrideError as err:
            raise SweepError(str(err).replace("in --set", "in the sweep")) from None
    for key, values in spec.grid.items():
        if not values:
            raise SweepError(f"grid key {key!r} has no values")


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' and '0-2,9' work too."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    except ValueError:
        raise SweepError(f"--seeds expects e.g. 0-4 or 0,3,7, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise SweepError(f"--seeds expects non-negative seeds, got {text!r}")
    return list(dict.fromkeys(seeds))


def inline_spec(
    experiments: list[str],
    grid: dict[str, list[Any]],
    seeds: list[int],
    overrides: dict[str, Any],
    name: str | None = None,
) -> SweepSpec:
    """The spec of `fsmrun sweep EXP... --grid k=v1,v2 --seeds 0-4 --set k=v`."""
    default = "_".join(Path(e).stem for e in experiments)[:40] or "sweep"
    spec = SweepSpec(
        name=name or default, experiments=experiments, set=overrides, grid=grid, seeds=seeds
    )
    check_spec_keys(spec)
    return spec


def expand(spec: SweepSpec) -> list[Cell]:
    """Cells in order: experiments x cases x grid combinations x seeds."""
    from fsmrun.core.determinism import config_hash  # torch: only when cells are built

    keys = list(spec.grid)
    combos = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*spec.grid.values())
    ]
    cells: list[Cell] = []
    for source in spec.experiments:
        base = load_experiment(source)
        for case in spec.cases or [{}]:
            for combo in combos:
                for seed in spec.seeds:
                    overrides = {**spec.set, **case, **combo, "seed": seed}
                    try:
                        exp = apply_overrides(base, overrides)
                    except OverrideError as err:
                        raise SweepError(f"{source} with {overrides}: {err}") from None
                    cells.append(Cell(len(cells), source, overrides, exp, config_hash(exp)))
    return cells


def spec_size(spec: SweepSpec) -> int:
    """Number of cells `spec` expands to (without building them)."""
    combos = 1
    for values in spec.grid.values():
        combos *= len(values)
    return len(spec.experiments) * max(1, len(spec.cases)) * combos * len(spec.seeds)


def refresh(root: Path, record: SweepRecord) -> SweepRecord:
    """`record` with every cell's status read from the run folders now (nothing written)."""
    cells = []
    for cell in record.cells:
        state = cell_state(root, cell.experiment, cell.config_hash, cell)
        cells.append(
            cell.model_copy(
                update={"status": state.status, "run_id": state.run_id, "error": state.error}
            )
        )
    return record.model_copy(update={"cells": cells, "counts": count_statuses(cells)})


def sweep_hash(cells: list[Cell]) -> str:
    """sha256 over the cells' config hashes in order: the sweep's identity."""
    return hashlib.sha256(json.dumps([c.config_hash for c in cells]).encode()).hexdigest()


# ---------------------------------------------------------------------------- records


def sweeps_root(root: Path) -> Path:
    return Path(root) / SWEEPS_DIR


def record_path(root: Path, sweep_id: str) -> Path:
    return sweeps_root(root) / sweep_id / RECORD_FILE


def read_record(path: Path) -> SweepRecord:
    try:
        return SweepRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as err:
        raise SweepError(f"cannot read sweep record {path}: {err}") from None


def find_sweep(root: Path, ref: str) -> Path:
    """sweep.json of a sweep named by its id, a unique prefix of it, or its name (newest)."""
    folder = sweeps_root(root)
    ids = sorted(p.parent.name for p in folder.glob(f"*/{RECORD_FILE}")) if folder.is_dir() else []
    if ref in ids:
        return record_path(root, ref)
    named = [i for i in ids if i.rsplit("-", 1)[0] == ref] or [i for i in ids if i.startswith(ref)]
    if not named:
        known = f"; sweeps: {', '.join(ids)}" if ids else f"; no sweeps under {folder}"
        raise SweepError(f"no sweep {ref!r}{known}")
    paths = [record_path(root, i) for i in named]
    return max(paths, key=lambda p: read_record(p).updated)


def _cell_record(cell: Cell, status: str, run_id: str | None, error: str | None) -> SweepCell:
    return SweepCell(
        index=cell.index,
        source=cell.experiment,
        experiment=cell.config.name,
        overrides=cell.overrides,
        config_hash=cell.config_hash,
        run_id=run_id,
        status=status,  # type: ignore[arg-type]
        error=error,
    )


def count_statuses(cells: list[SweepCell]) -> dict[str, int]:
    counts = Counter(c.status for c in cells)
    return {status: counts.get(status, 0) for status in CELL_STATUSES}


def write_record(root: Path, record: SweepRecord) -> Path:
    record = record.model_copy(
        update={"updated": time.time(), "counts": count_statuses(record.cells)}
    )
    path = record_path(root, record.sweep_id)
    atomic_write_json(path, record)
    return path


# ---------------------------------------------------------------------------- cell state


@dataclass(frozen=True)
class CellState:
    """Where a cell stands according to its run folders."""

    status: str
    folder: Path | None
    run_id: str | None
    error: str | None = None


def cell_state(root: Path, experiment: str, chash: str, previous: SweepCell | None) -> CellState:
    """done if any run of the config completed; else the newest run's status; else todo
    (or failed, if the last attempt failed before it had a run folder)."""
    hash_dir = Path(root) / experiment / chash[:HASH_PREFIX_LEN]
    runs = []
    for folder in sorted(hash_dir.glob("v*"), key=lambda p: _version(p.name)):
        try:
            record = read_run_record(folder)
        except RegistryError:
            continue
        if record.config_hash == chash:
            runs.append((folder, record))
    for folder, record in runs:
        if record.status == "completed":
            return CellState("done", folder, record.run_id)
    if runs:
        folder, record = runs[-1]
        status = _RUN_TO_CELL.get(effective_status(record), "failed")
        return CellState(status, folder, record.run_id, record.error)
    if previous is not None and previous.status == "failed" and previous.run_id is None:
        return CellState("failed", None, None, previous.error)
    return CellState("todo", None, None)


def _version(name: str) -> int:
    return int(name[1:]) if name[1:].isdigit() else -1


def _resumable(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return (checkpoints / "last.pt").is_file() or (checkpoints / "last.prev.pt").is_file()


# ---------------------------------------------------------------------------- running


@dataclass
class SweepResult:
    """What one invocation did; `record` is the sweep.json written last."""

    record: SweepRecord
    path: Path
    started: int
    skipped: int


def sweep_status(
    root: Path, spec: SweepSpec, cells: list[Cell], record: SweepRecord | None
) -> SweepRecord:
    """The record of `cells` with every status read from the run folders now."""
    previous = {c.index: c for c in record.cells} if record else {}
    now = time.time()
    digest = sweep_hash(cells)
    rows = []
    for cell in cells:
        state = cell_state(root, cell.config.name, cell.config_hash, previous.get(cell.index))
        rows.append(_cell_record(cell, state.status, state.run_id, state.error))
    return SweepRecord(
        sweep_id=f"{spec.name}-{digest[:HASH_PREFIX_LEN]}",
        sweep_hash=digest,
        spec=spec,
        created=record.created if record else now,
        updated=now,
        counts=count_statuses(rows),
        cells=rows,
    )


def run_sweep(
    spec: SweepSpec,
    executor: Executor,
    *,
    results_root: Path,
    device: str = "cpu",
    retry_failed: bool = False,
    command: list[str] | None = None,
    on_outcome: Callable[[SweepCell, CellOutcome], None] | None = None,
) -> SweepResult:
    """Run the cells of `spec` that are not done, in the one registry under `results_root`.

    todo cells are trained, interrupted ones resumed from last.pt, failed ones trained anew
    only with `retry_failed`; running ones (another process) are left alone. After each cell
    the coordinator indexes its run folder and rewrites sweep.json. KeyboardInterrupt stops
    the workers cleanly (their runs stay resumable), writes the record and propagates.
    """
    root = Path(results_root)
    cells = expand(spec)
    path = record_path(root, f"{spec.name}-{sweep_hash(cells)[:HASH_PREFIX_LEN]}")
    record = sweep_status(root, spec, cells, read_record(path) if path.is_file() else None)
    write_record(root, record)
    tasks = []
    for cell, row in zip(cells, record.cells, strict=True):
        if row.status == "todo" or (row.status == "failed" and retry_failed):
            tasks.append(_task(cell, root, device, command, resume=None))
        elif row.status == "interrupted":
            folder = cell_state(root, cell.config.name, cell.config_hash, row).folder
            resume = folder if folder is not None and _resumable(folder) else None
            tasks.append(_task(cell, root, device, command, resume=resume))
    index = RegistryIndex(root)
    by_index = {c.index: c for c in cells}
    cell_rows = list(record.cells)

    def finished(outcome: CellOutcome) -> None:
        nonlocal record
        cell = by_index[outcome.index]
        state = cell_state(root, cell.config.name, cell.config_hash, None)
        if state.folder is not None:
            # the index is a cache; `fsmrun ls --reindex` rebuilds it
            with contextlib.suppress(RegistryError):
                index.upsert_folder(state.folder)
        if state.status == "todo" and outcome.status == "failed":
            state = CellState("failed", None, None, outcome.error)
        row = _cell_record(cell, state.status, state.run_id, state.error or outcome.error)
        cell_rows[cell.index] = row
        record = record.model_copy(update={"cells": list(cell_rows)})
        write_record(root, record)
        if on_outcome is not None:
            on_outcome(row, outcome)

    try:
        executor.run(tasks, finished)
    finally:
        write_record(root, record)
    return SweepResult(read_record(path), path, len(tasks), len(cells) - len(tasks))


def _task(
    cell: Cell, root: Path, device: str, command: list[str] | None, resume: Path | None
) -> CellTask:
    return CellTask(
        index=cell.index,
        config_json=cell.config.model_dump_json(),
        results_root=str(root),
        device=device,
        resume_dir=str(resume) if resume is not None else None,
        command=list(command or []),
        label=f"{cell.config.name} {describe_overrides(cell.overrides)}",
    )


def describe_overrides(overrides: dict[str, Any]) -> str:
    """'model.arch=lstm seed=1'."""
    return " ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()
    )


def flat_config(exp: ExperimentConfig) -> dict[str, Any]:
    """Every config value by dotted key ('experiment' for the name)."""
    flat = flatten(exp.model_dump(mode="json"))
    flat["experiment"] = flat.pop("name")
    return flat
