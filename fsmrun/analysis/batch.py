"""Analysing many runs (an experiment's, a sweep's) through the sweep executors: each run is a
`CellTask` whose worker is `analyze_cell`, so the in-process, pool and Ray executors all
serve, with the thread limits and Ctrl-C handling they give training cells."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from fsmrun.analysis.extract import ExtractionBudget
from fsmrun.analysis.run_analysis import AnalyzeOptions, analyze_run
from fsmrun.base.errors import UserError
from fsmrun.sweeps.executors import CellOutcome, CellTask, Executor

__all__ = ["REFUSED", "WORKER", "analyze_cell", "analyze_many", "options_from_json"]

WORKER = "fsmrun.analysis.batch:analyze_cell"
REFUSED = "refused"  # the run cannot be analysed (user error): not a crash


def options_to_json(options: AnalyzeOptions) -> str:
    return json.dumps(asdict(options), sort_keys=True)


def options_from_json(text: str) -> AnalyzeOptions:
    doc = json.loads(text)
    doc["budget"] = ExtractionBudget(**doc["budget"])
    return AnalyzeOptions(**doc)


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
) -> list[CellOutcome]:
    """Analyse every run folder with `executor`; outcomes in the order of `folders`."""
    payload = options_to_json(options)
    tasks = [
        CellTask(
            index=i,
            config_json=payload,
            results_root=str(Path(folder).parents[2]),
            device=options.device,
            resume_dir=str(folder),
            worker=WORKER,
        )
        for i, folder in enumerate(folders)
    ]
    outcomes: dict[int, CellOutcome] = {}

    def done(outcome: CellOutcome) -> None:
        outcomes[outcome.index] = outcome
        on_outcome(outcome)

    executor.run(tasks, done)
    return [outcomes[i] for i in sorted(outcomes)]
