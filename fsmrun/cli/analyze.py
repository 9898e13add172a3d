"""`fsmrun analyze`: extract an automaton from each run's model, compare it exactly with the
run's DFA and probe its layers; writes `<run>/analysis/` and prints a short summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fsmrun.base.errors import UserError
from fsmrun.cli._common import (
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    console,
    echo_json,
    results_root,
)
from fsmrun.cli._options import DeviceOption, JsonOption, ResultsDirOption
from fsmrun.runs.layout import RunNotFound, is_plain_name, iter_run_folders, resolve_run
from fsmrun.runs.run_folder import RunFolder


def _targets(root: Path, refs: list[str], experiments: list[str], sweep: str | None) -> list[Path]:
    """The run folders named: runs, every run of each experiment, a sweep's completed runs."""
    from fsmrun.sweeps import coordinator

    if sweep is not None:
        if refs or experiments:
            raise UserError("--sweep analyses one sweep's runs; give it without RUN or -e")
        record = coordinator.read_record(coordinator.find_sweep(root, sweep))
        folders, _ = coordinator.completed_runs(root, record)
        if not folders:
            raise UserError(
                f"sweep {record.sweep_id} has no completed runs yet "
                f"(`fsmrun sweep status {record.sweep_id}` shows its cells)"
            )
        return folders
    if not refs and not experiments:
        raise UserError("give a run (id, prefix or folder), several runs, -e EXP or --sweep NAME")
    folders = []
    for ref in refs:
        folders += _named(root, ref)
    for name in experiments:
        found = list(iter_run_folders(root, name))
        if not found:
            raise UserError(f"no runs of experiment {name!r} under {root} (`fsmrun ls` lists runs)")
        folders += found
    return list(dict.fromkeys(f.resolve() for f in folders))


def _named(root: Path, ref: str) -> list[Path]:
    """Every run of the experiment `ref` names (run ids start with it, so it comes first);
    else the run it names; else the completed runs of the sweep it names (so RUN may be EXP
    or SWEEP, as DESIGN.md writes it)."""
    from fsmrun.sweeps import coordinator

    found = list(iter_run_folders(root, ref)) if is_plain_name(ref) else []
    if found:
        return found
    try:
        return [resolve_run(root, ref)]
    except RunNotFound:
        try:
            record = coordinator.read_record(coordinator.find_sweep(root, ref))
        except coordinator.SweepError:
            raise RunNotFound(
                f"no run, experiment with runs or sweep named {ref!r} under {root} "
                "(`fsmrun ls` lists runs)"
            ) from None
        return coordinator.completed_runs(root, record)[0]


def analyze(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN",
            help="Run ids, unique prefixes or run folders; a name that is no run but an "
            "experiment with runs, or a sweep, stands for all its (completed) runs.",
            show_default=False,
        ),
    ] = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            "-e",
            metavar="EXP",
            help="Every run of this experiment (repeatable).",
            show_default=False,
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="The completed runs of this sweep.", show_default=False),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="Checkpoint: best or last [default: the one the run reports, "
            "train.evaluate_checkpoint].",
            show_default=False,
        ),
    ] = None,
    max_states: Annotated[
        int, typer.Option(help="State cap of the extracted machine (reaching it is reported).")
    ] = 100,
    max_queries: Annotated[
        int, typer.Option(help="Query budget: strings the model may label per run.")
    ] = 200_000,
    max_seconds: Annotated[float, typer.Option(help="Time budget of one extraction.")] = 120.0,
    max_length: Annotated[
        int | None,
        typer.Option(
            help="Longest equivalence word and agreement length [default: the OOD maximum].",
            show_default=False,
        ),
    ] = None,
    probes: Annotated[bool, typer.Option(help="Fit the per-layer state probes.")] = True,
    figures: Annotated[bool, typer.Option(help="Draw the figures into analysis/.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="Figure format: png, svg or pdf.")] = "png",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Runs analysed at once, as sweep cells are run (in this process for 1, a "
            "process pool for more) [default: 1 for one run, else the CPU cores].",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Where several runs are analysed: local or ray (as `sweep`).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address [default: a local Ray].", show_default=False),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Analyse again a run whose analysis is up to date (same options, newer than "
            "its checkpoint); without it such runs are skipped."
        ),
    ] = False,
    json_: JsonOption = False,
    device: DeviceOption = "cpu",
    results_dir: ResultsDirOption = None,
) -> None:
    """Extract an automaton from each run's model (AALpy KV), compare it exactly with the
    run's minimal DFA, and probe every layer for the DFA state beside a control task.

    Writes <run>/analysis/ (analysis.json, extracted.json/.dot, figures); `fsmrun show RUN`
    prints the summary again.

    \b
    Examples:  fsmrun analyze parity-4fe2d0
               fsmrun analyze -e parity --workers 2
               fsmrun analyze --sweep tomita --no-probes
    """
    from fsmrun.analysis.extract import ExtractionBudget
    from fsmrun.analysis.plots.outcome import FORMATS
    from fsmrun.analysis.run_analysis import AnalyzeOptions

    if checkpoint not in (None, "best", "last"):
        raise UserError(f"--checkpoint must be best or last, not {checkpoint!r}")
    if fmt not in FORMATS:
        raise UserError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if max_states < 1 or max_queries < 1 or max_seconds <= 0 or (workers or 1) < 1:
        raise UserError("--max-states, --max-queries, --max-seconds and --workers must be positive")
    if max_length is not None and max_length < 0:
        raise UserError("--max-length must be at least 0")
    root = results_root(results_dir)
    folders = _targets(root, runs or [], experiment or [], sweep)
    options = AnalyzeOptions(
        checkpoint=checkpoint,
        device=device,
        budget=ExtractionBudget(max_states, max_queries, max_seconds),
        max_length=max_length,
        probes=probes,
        figures=figures,
        fmt=fmt,
    )
    if len(folders) == 1 and backend == "local":
        _analyze_one(folders[0], options, force, json_)
        return
    _analyze_many(folders, options, workers, backend, address, force, json_)


def _analyze_one(folder: Path, options: object, force: bool, json_: bool) -> None:
    from fsmrun.analysis.analysis_summary import summary_lines
    from fsmrun.analysis.batch import up_to_date
    from fsmrun.analysis.run_analysis import analyze_run

    report = None
    if not force and up_to_date(folder, options):  # type: ignore[arg-type]
        report = RunFolder(folder).read_analysis()
        console.print(
            "analysis up to date (same options, newer than the checkpoint); --force redoes it",
            markup=False,
        )
    if report is None:
        report = analyze_run(folder, options)  # type: ignore[arg-type]
    if json_:
        echo_json(report.model_dump_json(indent=2))
    else:
        for line in summary_lines(report):
            typer.echo(line)


def _analyze_many(
    folders: list[Path],
    options: object,
    workers: int | None,
    backend: str,
    address: str | None,
    force: bool,
    json_: bool,
) -> None:
    """Every run through the sweep executors: a progress line per run (stderr), its summary
    (stdout), one count line at the end. Refused runs exit 2, crashed ones 1; neither stops
    the others."""
    import time

    from fsmrun.analysis.analysis_summary import summary_lines
    from fsmrun.analysis.batch import REFUSED, SKIPPED, analyze_many
    from fsmrun.sweeps.request import make_executor

    executor = make_executor(backend, workers, address)
    total = len(folders)
    counts = {"completed": 0, SKIPPED: 0, REFUSED: 0, "failed": 0}
    start = time.monotonic()
    console.print(
        f"analysing {total} runs ({workers or 'one per core'} at once, backend {backend})",
        markup=False,
    )

    def show(outcome: object) -> None:
        status = outcome.status  # type: ignore[attr-defined]
        key = status if status in counts else "failed"  # interrupted: its worker died
        counts[key] += 1
        done = sum(counts.values())
        folder = RunFolder(outcome.run_dir)  # type: ignore[attr-defined]
        try:
            name = folder.read_record().run_id
        except Exception:  # no readable run.json: its refusal says why
            name = str(folder.path)
        error = (outcome.error or "no message").splitlines()[0]  # type: ignore[attr-defined]
        word = {"completed": "analysed", SKIPPED: "up to date, skipped"}.get(
            status, f"{status}: {error}"
        )
        console.print(f"[{done}/{total}] {name}: {word}", markup=False)
        report = folder.read_analysis() if status == "completed" else None
        if report is None:
            return
        if json_:
            echo_json(report.model_dump_json())
        else:
            for line in summary_lines(report):
                typer.echo(line)

    try:
        analyze_many(folders, options, executor, show, force=force)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        console.print("analysis interrupted; the same command carries on", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(
        f"{counts['completed']} of {total} runs analysed, {counts[SKIPPED]} up to date, "
        f"{counts[REFUSED]} refused, {counts['failed']} failed in "
        f"{time.monotonic() - start:.1f}s",
        markup=False,
    )
    if counts["failed"]:
        raise typer.Exit(EXIT_ENVIRONMENT)
    if counts[REFUSED]:
        raise typer.Exit(EXIT_USER_ERROR)
