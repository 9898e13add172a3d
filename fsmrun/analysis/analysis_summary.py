"""Short text of an analysis report (for `analyze` and `show`) and the numbers other commands
read from it (`ls --field analysis.<name>`, `report --metric analysis.<name>`). No torch."""

from __future__ import annotations

from fsmrun.base.errors import UserError
from fsmrun.runs.run_folder import RunFolder, RunFolderError
from fsmrun.schemas.analysis import AnalysisReport

__all__ = [
    "ANALYSIS_FIELD_PREFIX",
    "ANALYSIS_NUMBERS",
    "analysis_fields",
    "analysis_numbers",
    "check_analysis_field",
    "summary_lines",
]

ANALYSIS_FIELD_PREFIX = "analysis."

# name -> what it is; every value a float or None (booleans as 0/1, so a mean over seeds is
# the fraction of seeds: `report --metric analysis.equivalent`).
ANALYSIS_NUMBERS = {
    "equivalent": "1 if the extracted machine equals the target DFA, else 0",
    "extracted_states": "states of the extracted machine",
    "converged": "1 if extraction converged within its state cap and budgets, else 0",
    "fidelity": "agreement of extracted machine and model on the equivalence words' prefixes",
    "min_agreement": "lowest exact agreement with the target over lengths 0..max",
    "ood_agreement": "mean exact agreement over the OOD lengths (else the training lengths)",
    "model_strings": "strings the model labelled during extraction",
    "probe_best_test": "best probe accuracy for the DFA state over layers (test prefixes)",
    "probe_best_selectivity": "selectivity (test) of that best layer",
}


def analysis_numbers(
    report: AnalysisReport, ood_min_len: int | None = None
) -> dict[str, float | None]:
    """The values of ANALYSIS_NUMBERS for one report (None where not measured)."""
    ex, cmp = report.extraction, report.comparison
    numbers: dict[str, float | None] = dict.fromkeys(ANALYSIS_NUMBERS)
    numbers["converged"] = float(ex.status == "converged")
    numbers["extracted_states"] = None if ex.num_states is None else float(ex.num_states)
    numbers["fidelity"] = ex.fidelity
    numbers["model_strings"] = float(ex.model_strings)
    if cmp is not None:
        numbers["equivalent"] = float(cmp.equivalent)
        numbers["min_agreement"] = min(cmp.agreement)
        tail = cmp.agreement[ood_min_len:] if ood_min_len is not None else cmp.agreement
        tail = tail or cmp.agreement
        numbers["ood_agreement"] = sum(tail) / len(tail)
    if report.probes is not None and report.probes.layers:
        best = max(report.probes.layers, key=lambda p: p.test_acc)
        numbers["probe_best_test"] = best.test_acc
        numbers["probe_best_selectivity"] = best.selectivity_test
    return numbers


def check_analysis_field(key: str) -> str:
    """The name in `analysis.<name>`; UserError naming the known ones otherwise."""
    name = key.removeprefix(ANALYSIS_FIELD_PREFIX)
    if name not in ANALYSIS_NUMBERS:
        raise UserError(
            f"unknown analysis field {key!r}; use analysis.<name>, name one of "
            f"{', '.join(ANALYSIS_NUMBERS)}"
        )
    return name


def analysis_fields(folder: RunFolder) -> dict[str, float | None]:
    """`analysis.<name>` -> value for a run folder ({} when it has no readable analysis)."""
    try:
        report = folder.read_analysis()
        config = folder.read_config() if report is not None else None
    except RunFolderError:
        return {}
    if report is None:
        return {}
    ood = config.data.ood_min_len if config is not None and config.data.n_test_ood else None
    numbers = analysis_numbers(report, ood)
    return {ANALYSIS_FIELD_PREFIX + k: v for k, v in numbers.items()}


def _fraction(x: float) -> str:
    """Three decimals, or six where three would round a disagreement away to 1.000."""
    return f"{x:.6f}" if 0.9995 <= x < 1.0 else f"{x:.3f}"


def _agreement_text(agreement: list[float]) -> str:
    if min(agreement) == 1.0:
        return f"1 at every length 0..{len(agreement) - 1}"
    first = next(n for n, a in enumerate(agreement) if a < 1.0)
    worst = min(range(len(agreement)), key=lambda n: agreement[n])
    head = f"1 up to length {first - 1}, then" if first > 0 else "below 1 from length 0,"
    return (
        f"{head} down to {_fraction(agreement[worst])} (length {worst}); "
        f"{_fraction(agreement[-1])} at length {len(agreement) - 1}"
    )


def summary_lines(report: AnalysisReport) -> list[str]:
    """A few lines: extraction, exact comparison, probes."""
    ex, cmp = report.extraction, report.comparison
    kind = "Moore machine" if ex.automaton_type == "moore" else "DFA"
    stop = {
        "converged": "converged",
        "state_cap": f"stopped at the state cap ({ex.max_states})",
        "query_budget": f"stopped at the query budget ({ex.max_model_strings:,} strings)",
        "time_budget": f"stopped at the time budget ({ex.max_seconds:g} s)",
    }[ex.status]
    states = "no hypothesis" if ex.num_states is None else f"{ex.num_states} states"
    lines = [
        f"{report.run_id} ({report.checkpoint} checkpoint): extracted {kind} with {states}, "
        f"{stop} after {ex.rounds} equivalence rounds; the model labelled "
        f"{ex.model_strings:,} strings in {ex.model_calls} batches ({ex.seconds:.1f} s); "
        f"fidelity to the model {ex.fidelity:.4f}"
    ]
    if cmp is not None:
        if cmp.equivalent:
            lines.append(f"  equivalent to the target ({cmp.target_states} states): yes")
        else:
            verdict = "right" if cmp.model_right else "wrong"
            lines.append(
                f"  equivalent to the target ({cmp.target_states} states): no; shortest "
                f"difference {cmp.difference!r} (length {len(cmp.difference or '')}): target "
                f"{cmp.target_output}, extracted {cmp.extracted_output}, model "
                f"{cmp.model_output} ({verdict})"
            )
        lines.append(f"  exact agreement by length: {_agreement_text(cmp.agreement)}")
    if report.probes is not None:
        parts = [
            f"{p.layer} {p.test_acc:.3f}"
            + ("" if p.ood_acc is None else f"/{p.ood_acc:.3f}")
            + f" (sel {p.selectivity_test:+.3f})"
            for p in report.probes.layers
        ]
        majority = f"majority {report.probes.majority_test:.3f}"
        lines.append(f"  state probes test/ood: {'; '.join(parts)}; {majority}")
    lines += [f"  {notice}" for notice in report.notices]
    return lines
