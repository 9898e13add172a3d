"""`analyze_run`: extract an automaton from one run's model, compare it exactly with the run's
minimal DFA, probe every layer for the DFA state, draw the figures, and write it all into
`<run>/analysis/` (a regenerable cache; nothing else in the run folder changes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fsmrun.analysis import analysis_figures as figures
from fsmrun.analysis.compare import compare
from fsmrun.analysis.extract import ALGORITHM, ExtractionBudget, extract_machine
from fsmrun.analysis.model_io import (
    OpenRun,
    layer_names,
    model_predictor,
    num_positions,
    open_run,
    split_hidden_states,
    split_strings,
)
from fsmrun.analysis.plots.outcome import FORMATS, Skip
from fsmrun.analysis.probes import (
    CONTROL_DESCRIPTION,
    control_labels,
    majority_accuracy,
    probe_layer,
)
from fsmrun.base.errors import UserError
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.analysis import (
    AnalysisReport,
    AnalysisSettings,
    Comparison,
    Extraction,
    LayerProbe,
    Probes,
)

__all__ = ["AnalyzeOptions", "analyze_run", "settings_of"]


@dataclass(frozen=True)
class AnalyzeOptions:
    """What `fsmrun analyze` does to each run."""

    checkpoint: str | None = None  # None: the checkpoint the run reports (evaluate_checkpoint)
    device: str = "cpu"
    budget: ExtractionBudget = ExtractionBudget()
    max_length: int | None = None  # agreement and equivalence words: None = OOD max length
    probes: bool = True
    probe_positions: int = 10_000  # per split, sampled (seeded) when a split has more
    figures: bool = True
    fmt: str = "png"


def settings_of(options: AnalyzeOptions, checkpoint: str) -> AnalysisSettings:
    """What decides an analysis's result (the device aside), with the checkpoint resolved."""
    return AnalysisSettings(
        checkpoint=checkpoint,  # type: ignore[arg-type]
        max_states=options.budget.max_states,
        max_model_strings=options.budget.max_model_strings,
        max_seconds=options.budget.max_seconds,
        max_length=options.max_length,
        probes=options.probes,
        probe_positions=options.probe_positions,
        figures=options.figures,
        fmt=options.fmt,
    )


def analyze_run(folder: str | Path, options: AnalyzeOptions = AnalyzeOptions()) -> AnalysisReport:
    """Analyse one run and write `<run>/analysis/`; the report written.

    Randomness (equivalence words, probe sampling, control labels, probe init) comes from the
    run's own seed, so analysing a run twice gives the same report (times aside).
    NotAnalysable/UserError before anything is written when the run cannot be analysed.
    """
    if options.fmt not in FORMATS:
        raise UserError(
            f"unknown figure format {options.fmt!r}; choose one of {', '.join(FORMATS)}"
        )
    started = time.monotonic()
    run_folder = RunFolder(folder)
    run = open_run(run_folder, options.checkpoint, options.device)
    data_cfg = run.exp.data
    max_length = options.max_length
    if max_length is None:
        max_length = data_cfg.ood_max_len if data_cfg.n_test_ood else data_cfg.max_len
    rng = np.random.default_rng([run.exp.seed, 18])
    predict = model_predictor(run.model, run.data.vocab, run.device)
    result = extract_machine(
        predict,
        run.data.dfa,
        moore=run.moore,
        fixed_words=split_strings(run.corpus),
        max_length=max_length,
        rng=rng,
        budget=options.budget,
    )
    extraction = Extraction(
        algorithm=ALGORITHM,
        automaton_type="moore" if run.moore else "dfa",
        status=result.status,  # type: ignore[arg-type]
        num_states=None if result.machine is None else result.machine.num_states,
        rounds=result.rounds,
        membership_queries=result.membership_queries,
        model_strings=result.model_strings,
        model_calls=result.model_calls,
        equivalence_words=result.equivalence_words,
        fidelity=result.fidelity,
        max_states=options.budget.max_states,
        max_model_strings=options.budget.max_model_strings,
        max_seconds=options.budget.max_seconds,
        seconds=result.seconds,
    )
    comparison = None
    if result.machine is not None:
        found = compare(run.data.dfa, result.machine, max_length)
        model_output = None
        if found.difference is not None:
            model_output = int(predict([found.difference])[0][-1])
        comparison = Comparison(
            equivalent=found.equivalent,
            target_states=run.data.dfa.num_states,
            extracted_states=result.machine.num_states,
            difference=found.difference,
            target_output=found.output_a,
            extracted_output=found.output_b,
            model_output=model_output,
            model_right=None if model_output is None else model_output == found.output_a,
            agreement=[float(f) for f in found.agreement],
            max_length=max_length,
        )
    probes = _probes(run, options.probe_positions) if options.probes else None
    report = AnalysisReport(
        run_id=run.record.run_id,
        checkpoint=run.checkpoint,  # type: ignore[arg-type]
        task=data_cfg.task,
        extraction=extraction,
        comparison=comparison,
        probes=probes,
        seconds=0.0,
        figures=[],
        notices=[],
        settings=settings_of(options, run.checkpoint),
    )
    if options.figures:
        report = _draw(run, report, result.machine, options.fmt)
    report = report.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
    machine = result.machine
    run_folder.write_analysis(
        report,
        None if machine is None else machine.to_json(),
        None if machine is None else machine.to_dot(),
    )
    return report


def _sample(total: int, cap: int, generator: torch.Generator) -> torch.Tensor | None:
    """Indices of `cap` of `total` positions (sorted), or None to keep them all."""
    if total <= cap:
        return None
    return torch.randperm(total, generator=generator)[:cap].sort().values


def _probes(run: OpenRun, cap: int) -> Probes:
    generator = torch.Generator().manual_seed(run.exp.seed)
    names = ["train", "test"] + (["test_ood"] if "test_ood" in run.data.splits else [])
    collected = {
        name: split_hidden_states(
            run.model, run.data, name, _sample(num_positions(run.data, name), cap, generator)
        )
        for name in names
    }
    num_states = run.data.dfa.num_states
    num_types = num_states * run.data.vocab.size + 1
    train_hidden, train_states, train_types = collected["train"]
    control = control_labels(train_states, num_types, generator)
    layers = []
    for i, layer in enumerate(layer_names(run.model)):
        evals = {n: (collected[n][0][i], collected[n][1], collected[n][2]) for n in names[1:]}
        scores = probe_layer(
            (train_hidden[i], train_states, train_types), evals, control, num_states, generator
        )
        layers.append(
            LayerProbe(
                layer=layer,
                test_acc=scores.test_acc,
                ood_acc=scores.ood_acc,
                control_test_acc=scores.control_test_acc,
                control_ood_acc=scores.control_ood_acc,
                selectivity_test=scores.test_acc - scores.control_test_acc,
                selectivity_ood=None
                if scores.ood_acc is None or scores.control_ood_acc is None
                else scores.ood_acc - scores.control_ood_acc,
            )
        )
    ood = collected.get("test_ood")
    return Probes(
        control=CONTROL_DESCRIPTION,
        train_positions=len(train_states),
        test_positions=len(collected["test"][1]),
        ood_positions=0 if ood is None else len(ood[1]),
        majority_test=majority_accuracy(train_states, collected["test"][1]),
        majority_ood=None if ood is None else majority_accuracy(train_states, ood[1]),
        layers=layers,
    )


def _draw(run: OpenRun, report: AnalysisReport, machine: object, fmt: str) -> AnalysisReport:
    written: list[str] = []
    notices: list[str] = []
    draws = {
        "machines": lambda: figures.machines(run.folder, run.data.dfa, machine, fmt),  # type: ignore[arg-type]
        "probes": lambda: figures.probes(run.folder, report, fmt),
        "agreement": lambda: figures.agreement(
            run.folder, report, run.exp, run.folder.read_metrics(), fmt
        ),
    }
    for name, draw in draws.items():
        try:
            written.append(draw().name)
        except Skip as skip:
            notices.append(f"{name} figure skipped: {skip}")
    return report.model_copy(update={"figures": written, "notices": notices})
