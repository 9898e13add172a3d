"""Determinism audit: train one experiment several times and compare what must repeat.

`compare_runs` compares two run folders (hashes, every logged history value, final weights,
metrics); `audit_experiment` trains the runs in a scratch folder (plus, optionally, one that
is stopped mid-epoch and resumed) and returns an `AuditReport`. Nothing here prints.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fsmrun._version import __version__
from fsmrun.base.env import resolve_device
from fsmrun.base.errors import UserError
from fsmrun.base.hashing import config_hash
from fsmrun.base.io import atomic_write_json
from fsmrun.data.stream import training_steps_per_epoch
from fsmrun.runs.index import RunIndex
from fsmrun.runs.layout import AUDITS_DIR, HASH_PREFIX_LEN, check_writable, iter_run_folders
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.cli import AuditCheck, AuditReport, AuditRun, CheckStatus
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import TIMING_FIELDS
from fsmrun.train.checkpoint import KEY_MODEL, read_ckpt
from fsmrun.train.history import read_history
from fsmrun.train.loop import RunResult, resume_run, train_one_experiment

DEFAULT_MIN_STEPS = 60
# Without deterministic kernels CUDA may reorder float reductions; differences this small
# are accepted there (and stated in the report). CPU runs must be bitwise identical.
CUDA_NONDETERMINISTIC_TOLERANCE = 1e-3
METRICS_IGNORED = frozenset({"run_id", "wall_time_s"})
HASH_CHECKS = ("config", "corpus", "init_weights", "batch_order")


class AuditError(UserError):
    """An audit run did not end as expected (failed, or stopped early)."""


# ---------------------------------------------------------------------------- comparison


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) pairs of nested dicts and lists, in a stable order."""
    if isinstance(value, Mapping):
        for key in sorted(value):
            yield from _flatten(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{path}[{i}]")
    else:
        yield path, value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_diff(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if a == b:  # equal infinities
        return 0.0
    diff = abs(a - b)
    return math.inf if math.isnan(diff) else diff


def _verdict(max_diff: float, mismatch: str | None, tolerance: float | None) -> CheckStatus:
    if mismatch is not None:
        return "different"
    if max_diff == 0.0:
        return "identical"
    if tolerance is not None and max_diff <= tolerance:
        return "within_tolerance"
    return "different"


def compare_documents(
    a: Any, b: Any, *, tolerance: float | None = None
) -> tuple[CheckStatus, float, str]:
    """Compare two JSON-like documents leaf by leaf: (status, max abs difference, detail).

    Numbers are compared by absolute difference; anything else (strings, booleans, None,
    the set of keys) must be equal. The detail names the first (or largest) difference.
    """
    leaves_a, leaves_b = dict(_flatten(a)), dict(_flatten(b))
    if leaves_a.keys() != leaves_b.keys():
        only = sorted(leaves_a.keys() ^ leaves_b.keys())
        return "different", math.inf, f"fields present in only one: {', '.join(only[:5])}"
    max_diff, worst, mismatch = 0.0, "", None
    for key, va in leaves_a.items():
        vb = leaves_b[key]
        if _is_number(va) and _is_number(vb):
            diff = _number_diff(float(va), float(vb))
            if diff > max_diff:
                max_diff, worst = diff, f"{key}: {va!r} vs {vb!r}"
        elif va != vb and mismatch is None:
            mismatch = f"{key}: {va!r} vs {vb!r}"
    status = _verdict(max_diff, mismatch, tolerance)
    return status, max_diff, mismatch or worst or f"{len(leaves_a)} values"


def history_documents(run_dir: Path) -> list[dict[str, Any]]:
    """logs/history.jsonl as dicts without the timing fields (time, steps_per_s)."""
    records = read_history(RunFolder(run_dir).history)
    return [r.model_dump(exclude=set(TIMING_FIELDS)) for r in records]


def compare_history(
    a_dir: Path, b_dir: Path, *, tolerance: float | None = None
) -> tuple[CheckStatus, float, str]:
    """Every logged value of two histories, record by record (timing fields ignored)."""
    a, b = history_documents(a_dir), history_documents(b_dir)
    if len(a) != len(b):
        return "different", math.inf, f"{len(a)} vs {len(b)} history records"
    status, diff, detail = compare_documents(a, b, tolerance=tolerance)
    if status == "identical":
        return status, diff, f"{len(a)} records"
    return status, diff, f"record {detail}"


def final_state_dict(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model state dict of checkpoints/last.pt (its .prev copy if last.pt is damaged)."""
    _, inner = read_ckpt(RunFolder(run_dir).checkpoint("last"))
    return inner[KEY_MODEL]


def compare_state_dicts(
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    *,
    tolerance: float | None = None,
) -> tuple[CheckStatus, float, str]:
    """Tensor by tensor: names, shapes and dtypes must match; max abs difference of values."""
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        return "different", math.inf, f"tensors present in only one: {', '.join(only[:5])}"
    max_diff, worst = 0.0, ""
    for name in sorted(a):
        ta, tb = a[name], b[name]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            return (
                "different",
                math.inf,
                f"{name}: {tuple(ta.shape)}/{ta.dtype} vs " + (f"{tuple(tb.shape)}/{tb.dtype}"),
            )
        if torch.equal(ta, tb):
            continue
        diff = (
            (ta.double() - tb.double()).abs().max().item() if ta.is_floating_point() else math.inf
        )
        diff = math.inf if math.isnan(diff) else diff
        if diff > max_diff:
            max_diff, worst = diff, name
    status = _verdict(max_diff, None, tolerance)
    return status, max_diff, f"largest in {worst}" if worst else f"{len(a)} tensors"


def _metrics_document(run_dir: Path) -> dict[str, Any] | None:
    metrics = RunFolder(run_dir).read_metrics()
    return None if metrics is None else metrics.model_dump(exclude=set(METRICS_IGNORED))


def compare_runs(
    reference: Path, other: Path, compared: str, *, tolerance: float | None = None
) -> list[AuditCheck]:
    """Every check between two run folders of the same config, one AuditCheck each."""
    checks = []
    hashes_a = RunFolder(reference).read_record().hashes
    hashes_b = RunFolder(other).read_record().hashes
    for name in HASH_CHECKS:
        va = getattr(hashes_a, name) if hashes_a else None
        vb = getattr(hashes_b, name) if hashes_b else None
        same = va is not None and va == vb
        checks.append(
            AuditCheck(
                check=f"{name}_hash" if name in ("config", "corpus") else name,
                compared=compared,
                status="identical" if same else "different",
                max_abs_diff=None,
                detail=f"{va[:12]}"
                if same
                else f"{(va or 'missing')[:12]} vs {(vb or 'missing')[:12]}",
            )
        )

    def add(check: str, result: tuple[CheckStatus, float, str]) -> None:
        status, diff, detail = result
        checks.append(
            AuditCheck(
                check=check,
                compared=compared,
                status=status,
                max_abs_diff=diff if math.isfinite(diff) else None,
                detail=detail,
            )
        )

    add("history", compare_history(reference, other, tolerance=tolerance))
    add(
        "final_weights",
        compare_state_dicts(
            final_state_dict(reference), final_state_dict(other), tolerance=tolerance
        ),
    )
    ma, mb = _metrics_document(reference), _metrics_document(other)
    if ma is None or mb is None:
        add("metrics", ("different", math.inf, "metrics.json missing"))
    else:
        add("metrics", compare_documents(ma, mb, tolerance=tolerance))
    return _name_thread_counts(reference, other, compared, checks)


def _name_thread_counts(
    reference: Path, other: Path, compared: str, checks: list[AuditCheck]
) -> list[AuditCheck]:
    """When the runs trained with different torch thread counts (env.json), a `threads` check
    says so and every differing check names it as the likely reason: CPU float reductions
    are split by thread, so their results depend on the count."""
    env_a, env_b = RunFolder(reference).read_env(), RunFolder(other).read_env()
    differ = any(c.status == "different" for c in checks)
    if not differ or env_a is None or env_b is None or env_a.threads == env_b.threads:
        return checks
    why = f"torch threads differ ({env_a.threads} vs {env_b.threads}): CPU bits depend on it"
    named = [
        c.model_copy(update={"detail": f"{c.detail}; {why}"}) if c.status == "different" else c
        for c in checks
    ]
    thread_check = AuditCheck(
        check="threads", compared=compared, status="different", max_abs_diff=None, detail=why
    )
    return [thread_check, *named]


# ---------------------------------------------------------------------------- the audit


def default_max_steps(exp: ExperimentConfig) -> int:
    """Whole epochs with at least DEFAULT_MIN_STEPS steps, no more than the config trains."""
    per_epoch = training_steps_per_epoch(exp)
    epochs = min(exp.train.epochs, math.ceil(DEFAULT_MIN_STEPS / per_epoch))
    return per_epoch * epochs


def mid_epoch_step(total_steps: int, per_epoch: int) -> int:
    """A step near the middle of `total_steps` that does not end an epoch (when one exists)."""
    if total_steps < 2:
        raise UserError("the resume check needs at least 2 steps (raise --max-steps)")
    step = total_steps // 2
    for candidate in (step, step - 1, step + 1):
        if 1 <= candidate < total_steps and candidate % per_epoch != 0:
            return candidate
    return step


def _expect(result: RunResult, label: str, status: str) -> None:
    """AuditError unless the run ended `status`; the message carries the run's own error, as
    its folder lies in the scratch folder, deleted before the message is read."""
    if result.status != status:
        try:
            error = RunFolder(result.run_dir).read_record().error
        except UserError:
            error = None
        why = f": {error}" if error else ""
        raise AuditError(
            f"audit {label} ended {result.status} ({result.stop_reason}{why}) instead of "
            f"{status}; its scratch folder is deleted: `fsmrun train` the experiment to keep "
            f"such a run and look at it"
        )


def audit_experiment(
    exp: ExperimentConfig,
    *,
    runs: int = 2,
    resume_check: bool = False,
    max_steps: int | None = None,
    device: str = "auto",
    scratch_dir: str | Path | None = None,
    on_run: Callable[[str], None] | None = None,
) -> AuditReport:
    """Train `exp` `runs` times (and once stopped mid-epoch and resumed) and compare them.

    Every run trains `max_steps` steps (default: `default_max_steps`) in its own results
    folder inside a temporary scratch folder (deleted afterwards), so each generates its own
    corpus. Run 1 is the reference the others are compared with. `on_run(line)` receives a
    status line before anything is trained and before each training session.
    """
    if runs < 1 or (runs < 2 and not resume_check):
        raise UserError("--runs must be at least 2 (or 1 with --resume-check)")
    if max_steps is not None and max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    torch_device = resolve_device(device)
    steps = max_steps or default_max_steps(exp)
    tolerance = None
    reason = None
    if torch_device.type == "cuda" and not exp.train.deterministic:
        tolerance = CUDA_NONDETERMINISTIC_TOLERANCE
        reason = "CUDA without --deterministic: kernels may reorder float reductions"
    notify = on_run or (lambda label: None)
    notify(
        f"auditing {exp.name} ({config_hash(exp)[:HASH_PREFIX_LEN]}): {runs} run(s)"
        f"{' + a resumed run' if resume_check else ''} of {steps} steps on {torch_device}, "
        "in a scratch folder"
    )
    audit_runs: list[AuditRun] = []
    folders: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory(prefix="fsmrun-audit-", dir=scratch_dir) as tmp:
        for i in range(runs):
            label = f"run {i + 1}"
            notify(f"  training {label}")
            result = train_one_experiment(
                exp,
                device=device,
                results_root=Path(tmp) / f"run{i + 1}",
                progress=False,
                max_steps=steps,
                command=["fsmrun", "audit-determinism", exp.name],
            )
            _expect(result, label, "completed")
            audit_runs.append(AuditRun(label=label, steps=result.steps, status=result.status))
            folders.append((label, result.run_dir))
        if resume_check:
            reference_steps = audit_runs[0].steps if audit_runs else steps
            per_epoch = training_steps_per_epoch(exp)
            stop = mid_epoch_step(reference_steps, per_epoch)
            notify(f"  training resumed (stopped at step {stop})")
            first = train_one_experiment(
                exp,
                device=device,
                results_root=Path(tmp) / "resumed",
                progress=False,
                max_steps=steps,
                stop_at_step=stop,
                command=["fsmrun", "audit-determinism", exp.name],
            )
            _expect(first, "resumed run (first part)", "interrupted")
            result = resume_run(first.run_dir, device=device, progress=False, max_steps=steps)
            _expect(result, "resumed run", "completed")
            audit_runs.append(
                AuditRun(
                    label="resumed", steps=result.steps, status=result.status, stopped_at_step=stop
                )
            )
            folders.append(("resumed", result.run_dir))
        ref_label, ref_dir = folders[0]
        checks = [
            check
            for label, folder in folders[1:]
            for check in compare_runs(
                ref_dir, folder, f"{ref_label} vs {label}", tolerance=tolerance
            )
        ]
    return AuditReport(
        experiment=exp.name,
        config_hash=config_hash(exp),
        created=time.time(),
        fsmrun_version=__version__,
        device=str(torch_device),
        deterministic=exp.train.deterministic,
        max_steps=steps,
        runs=audit_runs,
        tolerance=tolerance,
        tolerance_reason=reason,
        checks=checks,
        passed=all(c.status != "different" for c in checks),
    )


def audit_and_record(
    exp: ExperimentConfig,
    results_root: str | Path,
    *,
    runs: int = 2,
    resume_check: bool = False,
    max_steps: int | None = None,
    device: str = "auto",
    on_run: Callable[[str], None] | None = None,
) -> tuple[AuditReport, Path]:
    """`fsmrun audit-determinism`: the results folder checked writable before anything trains,
    the audit (`audit_experiment`), the finished runs of the config marked audit-verified when
    it passed, the report written under `<results_root>/audits/`. Returns it and its path."""
    root = check_writable(results_root)
    report = audit_experiment(
        exp,
        runs=runs,
        resume_check=resume_check,
        max_steps=max_steps,
        device=device,
        on_run=on_run,
    )
    if report.passed:
        verified = mark_verified(root, exp.name, report.config_hash)
        report = report.model_copy(update={"verified_runs": verified})
    return report, write_report(root, report)


def report_path(results_root: Path, report: AuditReport) -> Path:
    """`<results_root>/audits/<experiment>-<hash12>-<UTC timestamp>.json`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(report.created))
    name = f"{report.experiment}-{report.config_hash[:HASH_PREFIX_LEN]}-{stamp}.json"
    return Path(results_root) / AUDITS_DIR / name


def write_report(results_root: Path, report: AuditReport) -> Path:
    """Write the report atomically under `<results_root>/audits/`; its path."""
    path = report_path(results_root, report)
    atomic_write_json(path, report)
    return path


def mark_verified(results_root: Path, experiment: str, chash: str) -> list[str]:
    """Set audit_verified=True in run.json (and the index) of every finished run of `chash`."""
    index = RunIndex(results_root)
    marked = []
    for folder in iter_run_folders(results_root, experiment):
        run = RunFolder(folder)
        record = run.read_record()
        if record.config_hash != chash or run.status() == "running":
            continue  # a run being written is never touched (its writer holds the lock)
        if record.audit_verified is not True:
            with run.lock():
                run.update_record(audit_verified=True)
        index.upsert_folder(folder)
        marked.append(record.run_id)
    return marked
