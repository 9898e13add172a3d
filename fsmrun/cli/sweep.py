"""`fsmrun sweep`: run a grid of experiments x overrides x seeds; `fsmrun sweep status`."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from fsmrun.cli._common import (
    EXIT_INTERRUPTED,
    console,
    data_console,
    echo_json,
    end_now,
    results_root,
)
from fsmrun.cli._options import DeviceOption, JsonOption, ResultsDirOption, TagOption
from fsmrun.cli.languages import suites_table
from fsmrun.runs.labels import label_run, parse_tags
from fsmrun.runs.layout import resolve_run
from fsmrun.schemas.sweep import SweepCell, SweepRecord, SweepSpec
from fsmrun.sweeps.coordinator import check_size
from fsmrun.sweeps.progress import SweepProgress
from fsmrun.sweeps.spec import describe_overrides

EXIT_FAILED_CELLS = 1
DEFAULT_MAX_CELLS = 10_000

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
    threads = f"; {record.threads} torch thread(s) per cell" if record.threads else ""
    out.print(Text(f"{record.sweep_id}: {counts_line(record.counts)}{threads}"))
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
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch threads of every cell, fixed when the sweep first starts (CPU bits "
            "depend on it) [default: cores / workers; a re-run keeps the sweep's].",
            show_default=False,
        ),
    ] = None,
    max_cells: Annotated[
        int,
        typer.Option(min=1, help="Refuse a grid with more cells than this."),
    ] = DEFAULT_MAX_CELLS,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Train failed cells again (interrupted ones, a dead worker's too, always resume).",
        ),
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
    tag: TagOption = None,
) -> None:
    """Run a sweep: every cell not yet done, in the one results folder (idempotent).

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
    from fsmrun.sweeps.coordinator import run_sweep
    from fsmrun.sweeps.request import make_executor, spec_from_args

    spec = spec_from_args(args or [], grid, seeds, set_, name, languages, symbols)
    size = check_size(spec, max_cells)  # before a single cell is built
    tags = parse_tags(tag or [])
    root = results_root(results_dir)
    executor = make_executor(backend, workers, address, cpus_per_task)
    console.print(f"sweep {spec.name}: {size} cells; backend {backend}", markup=False)
    start = time.monotonic()
    shown = _ProgressDisplay(spec)

    def on_outcome(cell: SweepCell, outcome: Any) -> None:
        if tags and cell.run_id:  # the cell's process is done with the run: label it now
            label_run(resolve_run(root, cell.run_id), tags)
        shown.cell(cell, outcome)

    try:
        with shown:
            result = run_sweep(
                spec,
                executor,
                results_root=root,
                device=device,
                retry_failed=retry_failed,
                command=["fsmrun", *sys.argv[1:]],
                on_outcome=on_outcome,
                on_start=shown.start,
                threads=threads,
                max_cells=max_cells,
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
    stopped = record.counts.get("interrupted", 0)
    if stopped:
        console.print(
            f"{stopped} cell(s) interrupted (a worker died or was stopped); run the same "
            "command again to resume them",
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


class _ProgressDisplay:
    """A live bar (done / total, failures, time left) on a terminal; otherwise one plain line
    per cell ending in the same counts."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.progress: SweepProgress | None = None
        self.bar: Progress | None = None
        self.bar_task: Any = None

    def __enter__(self) -> _ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, record: SweepRecord, to_run: int) -> None:
        self.progress = SweepProgress(to_run)
        console.print(
            f"{record.sweep_id}: {to_run} to run, {len(record.cells) - to_run} already done "
            f"or failed; {record.threads} torch thread(s) per cell",
            markup=False,
        )
        if console.is_terminal and to_run:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                console=console,
                transient=True,
            )
            self.bar.start()
            self.bar_task = self.bar.add_task("cells", total=to_run, counts=self.progress.summary())

    def cell(self, cell: SweepCell, outcome: Any) -> None:
        assert self.progress is not None
        self.progress.finished(cell.status)
        took = "taken from another process" if outcome.taken else f"{outcome.seconds:.1f}s"
        line = (
            f"[{self.progress.done}/{self.progress.total}] {cell.status:<11} {cell.experiment} "
            f"{describe_overrides(cell.overrides, self.spec.set)}  "
            f"{cell.run_id or ''} {cell.error or ''} ({took})"
        )
        if self.bar is not None:
            self.bar.console.print(Text(line))
            self.bar.update(self.bar_task, advance=1, counts=self.progress.summary())
        else:
            console.print(Text(f"{line}; {self.progress.summary()}"))


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
    from fsmrun.sweeps.request import status_record

    record = status_record(results_root(results_dir), ref)
    if json_:
        echo_json(record.model_dump_json())
    else:
        print_status(record, None if all_ else STATUS_ROWS)
    end_now()


app.command("run")(run)
app.command("status")(status)
