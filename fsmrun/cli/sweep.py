"""`fsmrun sweep`: run a grid of experiments x overrides x seeds; `fsmrun sweep status`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from fsmrun.base.overrides import parse_assignment
from fsmrun.cli._common import EXIT_INTERRUPTED, console, data_console, echo_json, results_root
from fsmrun.cli._options import DeviceOption, JsonOption, ResultsDirOption
from fsmrun.schemas.sweep import SweepCell, SweepRecord, SweepSpec
from fsmrun.sweeps.coordinator import (
    SweepError,
    describe_overrides,
    expand,
    find_sweep,
    inline_spec,
    list_suites,
    load_spec,
    parse_seeds,
    read_record,
    record_path,
    refresh,
    run_sweep,
    spec_size,
    sweep_id_for,
    sweep_status,
)

EXIT_FAILED_CELLS = 1

EXAMPLES = """\
\b
Examples:
  fsmrun sweep tomita --workers 2                       # a built-in suite (fsmrun sweep --list)
  fsmrun sweep my_sweep.toml                            # a sweep spec file
  fsmrun sweep parity tomita3 --grid model.arch=transformer,lstm --seeds 0-4 \\
      --set train.epochs=3
  fsmrun sweep my_sweep.toml --backend ray --address auto   # on a running Ray cluster
  fsmrun sweep status tomita                            # done, running, failed, to do
"""


class SweepGroup(typer.core.TyperGroup):
    """`fsmrun sweep ARGS` means `fsmrun sweep run ARGS` unless ARGS start with a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=SweepGroup,
    help="Run a grid of runs (`fsmrun sweep [run] ...`) or show its progress "
    "(`fsmrun sweep status ...`).\n\n" + EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _grid(assignments: list[str]) -> dict[str, list[Any]]:
    """--grid model.arch=transformer,lstm -> {'model.arch': ['transformer', 'lstm']}."""
    grid: dict[str, list[Any]] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not raw:
            raise SweepError(
                f"--grid expects key=v1,v2 (e.g. model.arch=transformer,lstm), got {assignment!r}"
            )
        grid[key.strip()] = [parse_assignment(f"{key}={v}")[1] for v in raw.split(",")]
    return grid


def _is_spec(arg: str) -> bool:
    if arg in list_suites():
        return True
    if arg.endswith(".toml") and Path(arg).is_file():
        import tomllib

        try:
            doc = tomllib.loads(Path(arg).read_text(encoding="utf-8"))
            return "experiments" in doc or "languages" in doc
        except (tomllib.TOMLDecodeError, OSError):
            return False
    return False


def build_spec(
    args: list[str],
    grid: list[str],
    seeds: str | None,
    sets: list[str],
    name: str | None,
    languages: str | None = None,
    symbols: str | None = None,
) -> SweepSpec:
    """A spec (file or suite, with --grid/--seeds/--set/--name/--languages applied) or an
    inline sweep."""
    overrides = {".".join(p): v for p, v in map(parse_assignment, sets)}
    files = {k: v for k, v in (("languages", languages), ("symbols", symbols)) if v is not None}
    if len(args) == 1 and _is_spec(args[0]):
        spec = load_spec(args[0])
        update: dict[str, Any] = {
            "set": {**spec.set, **overrides},
            "grid": {**spec.grid, **_grid(grid)},
            **files,
        }
        if seeds is not None:
            update["seeds"] = parse_seeds(seeds)
        if name is not None:
            update["name"] = name
        return SweepSpec.model_validate({**spec.model_dump(), **update})
    spec = inline_spec(args, _grid(grid), parse_seeds(seeds or "0"), overrides, name, **files)
    return spec


def suites_table() -> Table:
    table = Table()
    for column in ("suite", "cells", "experiments", "description"):
        table.add_column(column)
    for suite in list_suites():
        spec = load_spec(suite)
        table.add_row(
            suite,
            str(spec_size(spec)),
            Text(", ".join(spec.experiments)),
            Text(" ".join(spec.description.split())),
        )
    return table


STATUS_ROWS = 50  # cells shown in the status table without --all (a large sweep has thousands)


def shown_cells(cells: list[SweepCell], limit: int | None) -> list[SweepCell]:
    """At most `limit` cells, those not done first (they need attention), in grid order."""
    if limit is None or len(cells) <= limit:
        return cells
    pending = [c for c in cells if c.status != "done"][:limit]
    done = [c for c in cells if c.status == "done"][: limit - len(pending)]
    return sorted(pending + done, key=lambda c: c.index)


def status_table(record: SweepRecord, limit: int | None = None) -> Table:
    table = Table()
    for column in ("#", "experiment", "overrides", "status", "run"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for cell in shown_cells(record.cells, limit):
        table.add_row(
            str(cell.index),
            cell.experiment,
            Text(describe_overrides(cell.overrides, record.spec.set)),
            _styled(cell.status),
            Text(cell.run_id or (cell.error or "-")),
        )
    return table


def print_status(record: SweepRecord, limit: int | None = STATUS_ROWS) -> None:
    """'<sweep id>: N done, ...' and the table of cells (at most `limit`), on stdout."""
    out = data_console()
    out.print(Text(f"{record.sweep_id}: {counts_line(record.counts)}"))
    out.print(status_table(record, limit))
    if limit is not None and len(record.cells) > limit:
        more = len(record.cells) - limit
        console.print(f"{more} more cells, --all to list every cell", markup=False)


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(s, 0)} {s.replace('todo', 'to do')}" for s in counts)


def _styled(status: str) -> Text:
    colour = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    return Text(status.replace("todo", "to do"), style=colour.get(status, ""))


def run(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SPEC|EXP...",
            help="A sweep spec (.toml with `experiments`), a built-in suite, or experiments.",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        list[str],
        typer.Option(
            "--grid", metavar="KEY=V1,V2", help="Grid axis (repeatable): one cell per value."
        ),
    ] = [],  # noqa: B006
    seeds: Annotated[
        str | None,
        typer.Option(
            metavar="0-4",
            help="Seeds of every cell, e.g. 0-4 or 0,3,7 [default: 0].",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str],
        typer.Option("--set", metavar="KEY=VALUE", help="Override for every cell (repeatable)."),
    ] = [],  # noqa: B006
    name: Annotated[
        str | None,
        typer.Option(help="Sweep name [default: the spec's, or the experiments']."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Cells at a time [default: the number of CPU cores].", show_default=False
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="local (a process pool) or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (e.g. auto) [default: start a local Ray].", show_default=False
        ),
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="ray: CPUs (torch threads) per cell [default: cores / workers "
            "locally, 1 on a cluster].",
            show_default=False,
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Train failed cells again.")
    ] = False,
    languages: Annotated[
        str | None,
        typer.Option(
            metavar="GLOB",
            help="A folder of languages as an axis: AT&T files (on each experiment's corpus, "
            "model and training) or experiment TOMLs; one cell per file, named after it.",
            show_default=False,
        ),
    ] = None,
    symbols: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="Symbol table of every AT&T file [default: <stem>.syms beside each].",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in suites.")] = False,
    device: DeviceOption = "cpu",
    results_dir: ResultsDirOption = None,
) -> None:
    """Run a sweep: every cell not yet done, in the one registry (idempotent).

    Completed cells are skipped, interrupted ones resumed exactly, failed ones retried only
    with --retry-failed. Ctrl-C stops cleanly; run the same command again to carry on.
    `fsmrun sweep ARGS` is short for `fsmrun sweep run ARGS`.

    \b
    Examples:
      fsmrun sweep tomita --workers 2
      fsmrun sweep parity tomita3 --grid model.arch=transformer,lstm --seeds 0-4
      fsmrun sweep my_sweep.toml --backend ray --address auto --retry-failed
      fsmrun sweep regex_a --languages 'mlregtest/*.att' --symbols mlregtest/alph4.txt \\
          --grid model.arch=transformer,lstm --seeds 0-2
    """
    if list_:
        data_console().print(suites_table())
        return
    if not args and languages is None:
        raise SweepError("give a sweep spec, a suite (fsmrun sweep --list) or experiments")
    if backend not in ("local", "ray"):
        raise SweepError(f"--backend must be local or ray, got {backend!r}")
    spec = build_spec(args or [], grid, seeds, set_, name, languages, symbols)
    root = results_root(results_dir)
    executor = _executor(backend, workers, address, cpus_per_task)
    console.print(f"sweep {spec.name}: {spec_size(spec)} cells; backend {backend}", markup=False)
    start = time.monotonic()
    done = [0]

    def report(cell: SweepCell, outcome: Any) -> None:
        done[0] += 1
        console.print(
            Text(
                f"[{done[0]}] {cell.status:<11} {cell.experiment} "
                f"{describe_overrides(cell.overrides, spec.set)}  "
                f"{cell.run_id or cell.error or ''} "
                f"({outcome.seconds:.1f}s)"
            ),
        )

    try:
        result = run_sweep(
            spec,
            executor,
            results_root=root,
            device=device,
            retry_failed=retry_failed,
            command=["fsmrun", *sys.argv[1:]],
            on_outcome=report,
        )
    except KeyboardInterrupt:
        console.print(
            "sweep interrupted; interrupted runs keep their last checkpoint. "
            "Run the same command again to carry on.",
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    record = result.record
    print_status(record)
    console.print(
        f"{result.started} cell(s) run, {result.skipped} skipped in "
        f"{time.monotonic() - start:.1f}s; record: {result.path}",
        markup=False,
    )
    failed = record.counts.get("failed", 0)
    if failed:
        console.print(
            f"error: {failed} of {len(record.cells)} cell(s) failed; `fsmrun sweep status "
            f"{record.sweep_id}` shows why; run again with --retry-failed to train them again",
            markup=False,
        )
        raise typer.Exit(EXIT_FAILED_CELLS)


def _executor(
    backend: str, workers: int | None, address: str | None, cpus_per_task: int | None
) -> Any:
    from fsmrun.sweeps.executors import (
        LocalExecutor,
        RayExecutor,
        SerialExecutor,
        threads_per_worker,
    )

    cores = os.cpu_count() or 1
    workers = workers or cores
    if backend == "ray":
        default = 1 if address else threads_per_worker(workers, cores)
        return RayExecutor(address, num_cpus=cores, cpus_per_task=cpus_per_task or default)
    return SerialExecutor() if workers == 1 else LocalExecutor(workers)


def status(
    ref: Annotated[
        str, typer.Argument(metavar="NAME|SPEC", help="Sweep name or id, a spec file or a suite.")
    ],
    json_: JsonOption = False,
    all_: Annotated[
        bool,
        typer.Option("--all", help=f"Every cell in the table [default: at most {STATUS_ROWS}]."),
    ] = False,
    results_dir: ResultsDirOption = None,
) -> None:
    """Show a sweep's progress: counts of done, running, interrupted, failed, to do; a table
    of the cells (those not done first; --all for every cell).

    Example:  fsmrun sweep status tomita
    """
    root = results_root(results_dir)
    try:
        record = refresh(root, read_record(find_sweep(root, ref)))
    except SweepError:
        if not _is_spec(ref):
            raise
        spec = load_spec(ref)
        cells = expand(spec)
        path = record_path(root, sweep_id_for(spec, cells))
        record = sweep_status(root, spec, cells, read_record(path) if path.is_file() else None)
    if json_:
        echo_json(record.model_dump_json())
        return
    print_status(record, None if all_ else STATUS_ROWS)


app.command("run")(run)
app.command("status")(status)
