"""Fault injection for crash tests: `FSMRUN_FAULT=point[:occurrence]` kills the process (exit
137, as kill -9) the occurrence-th time (from 1) it reaches `fault_point(point)`. Read once at
import; unset, `fault_point` is one dict lookup."""

from __future__ import annotations

import os

FAULT_ENV_VAR = "FSMRUN_FAULT"
POINTS = (
    "tmp_written",  # a temporary file written and fsynced, not yet renamed into place
    "prev_renamed",  # the old checkpoint renamed to .prev, the new one not yet installed
    "before_dir_fsync",  # a rename done, its folder not yet fsynced
    "history_mid_line",  # half a history line written
    "index_txn",  # inside an index transaction, before its commit
    "metrics_written",  # metrics.json written, run.json not yet completed
    "final_eval",  # between the final evaluations of last.pt and best.pt
    "version_claim",  # the new run folder built under its temporary name, not yet renamed
    "sweep_cell_result",  # the coordinator recorded a cell's result in sweep.json
    "sweep_record_write",  # the coordinator is about to replace sweep.json
    "sweep_worker_mid_cell",  # a sweep worker ended an epoch of its cell
)
EXIT_KILLED = 137


def _armed(spec: str | None) -> dict[str, int]:
    """{point: occurrence} from the variable's value ({} when unset or empty)."""
    if not spec:
        return {}
    point, _, occurrence = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"{FAULT_ENV_VAR}={spec!r}: unknown point; one of {', '.join(POINTS)}")
    return {point: int(occurrence) if occurrence else 1}


ARMED: dict[str, int] = _armed(os.environ.get(FAULT_ENV_VAR))
_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill the process here if `FSMRUN_FAULT` names this point and occurrence."""
    if name in ARMED:
        _seen[name] = _seen.get(name, 0) + 1
        if _seen[name] == ARMED[name]:
            os._exit(EXIT_KILLED)
