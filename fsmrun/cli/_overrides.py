"""Command-line overrides of an experiment config: `--set key.path=value` and the flags.

The pure functions live in `fsmrun.base.overrides` (sweeps use them too); re-exported here.
"""

from __future__ import annotations

from typing import Any

from fsmrun.base.overrides import apply_overrides, parse_assignment, parse_value

__all__ = ["apply_overrides", "collect_overrides", "parse_assignment", "parse_value"]


def collect_overrides(assignments: list[str], flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted path -> value from `--set` assignments, then the flags that were given (they win)."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        overrides[".".join(path)] = value
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides
