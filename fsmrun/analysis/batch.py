"""Analysing many runs (an experiment's, a sweep's) through the sweep executors: each run is a
`CellTask` whose worker is `analyze_cell`, so the in-process, pool and Ray executors all
serve, with the thread limits, failure isolation and Ctrl-C handling they give training cells.

A run whose analysis is up to date (same settings, written after its checkpoint) is skipped
unless `force`: re-running the analysis of a sweep redoes only what changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from fsmrun.analysis.extract import ExtractionBudget
from fsmrun.analysis.run_analysis import AnalyzeOptions, analyze_run, settings_of
from fsmrun.base.errors import UserError
from fsmrun.runs.run_folder import RunFolder
from fsmrun.sweeps.executors import CellOutcome, CellTask, Executor

__all__ = [
    "REFUSED",
    "SKIPPED",
    "WORKER",
    "analyze_cell",
    "analyze_many",
    "options_from_json",
    "options_to_json",
    "up_to_date",
]

WORKER = "fsmrun.analysis.batch:analyze_cell"
REFUSED = "refused"  # the run cannot be analysed (user error): not a crash
SKIPPED = "skipped"  # its analysis is up to date


def options_to_json(options: AnalyzeOptions) -> str:
    return json.dumps(asdict(options), sort_keys=True)


def options_from_json(text: str) -> AnalyzeOptions:
    doc = json.loads(text)
    doc["budget"] = ExtractionBudget(**doc["budget"])
    return AnalyzeOptions(**doc)


def up_to_date(folder: str | Path, options: AnalyzeOptions) -> bool:
    """Whether `folder` is a completed run whose analysis.json was made with `options`
    (checkpoint resolved as `analyze_run` resolves it) after its config and the checkpoint it
    analysed were written. Reads JSON only; anything unreadable or unusual counts as out of
    date (analysing it again then says what is wrong)."""
    run = RunFolder(folder)
    try:
        report = run.read_analysis()
        exp = run.read_config()
        record = run.read_record()
        status = run.status()
    except Exception:  # a broken file: analysing again reports it properly
        return False
    if report is None or report.settings is None or exp is None or status != "completed":
        return False
    checkpoint = options.checkpoint or exp.train.evaluate_checkpoint
    weights = run.checkpoint(checkpoint)  # type: ignore[arg-type]
    if report.run_id != record.run_id or not weights.is_file():
        return False
    if report.settings != settings_of(options, checkpoint):
        return False
    written = run.analysis_json.stat().st_mtime_ns
    return written >= max(weights.stat().st_mtime_ns, run.config_json.stat().st_mtime_ns)


def analyze_cell(task: CellTask) -> CellOutcome:
    """Analyse the run in `task.resume_dir` with the options in `task.config_json`."""
    start = time.monotonic()
    try:
        report = analyze_run(task.resume_dir or "", options_from_json(task.config_json))
    except UserError as err:
        return CellOutcome(task.index, REFUSED, None, task.resume_dir, str(err))
    return CellOutcome(
        task.index, "completed", report.run_id, task.resume_dir, None, time.monotonic() - start
    )


def analyze_many(
    folders: Sequence[Path],
    options: AnalyzeOptions,
    executor: Executor,
    on_outcome: Callable[[CellOutcome], None],
    *,
    force: bool = False,
    threads: int | None = None,
) -> list[CellOutcome]:
    """Analyse every run folder with `executor` (runs up to date come back SKIPPED at once
    unless `force`); outcomes in the order of `folders`. `threads` pins each analysis's
    torch threads (None: the executor's share of the cores, as for sweep cells).

    A run that crashes comes back `failed` and one whose worker died `interrupted`; neither
    stops the others. Every outcome carries its run folder."""
    payload = options_to_json(options)
    outcomes: dict[int, CellOutcome] = {}

    def done(outcome: CellOutcome) -> None:
        if outcome.run_dir is None:  # a crash or a dead worker: name the run all the same
            outcome = replace(outcome, run_dir=str(folders[outcome.index]))
        outcomes[outcome.index] = outcome
        on_outcome(outcome)

    tasks = []
    for i, folder in enumerate(folders):
        if not force and up_to_date(folder, options):
            done(CellOutcome(i, SKIPPED, None, str(folder)))
            continue
        tasks.append(
            CellTask(
                index=i,
                config_json=payload,
                results_root=str(Path(folder).parents[2]),
                device=options.device,
                resume_dir=str(folder),
                threads=threads,
                worker=WORKER,
            )
        )
    executor.run(tasks, done)
    return [outcomes[i] for i in sorted(outcomes)]
