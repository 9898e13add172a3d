"""Command-line overrides of an experiment config: `--set key.path=value` and the flags.

Overrides are merged into `exp.model_dump()` and the result validated again, so every value
passes the same checks as a TOML file; an unknown key names itself and the valid keys.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from fsmrun.core.errors import UserError, describe_validation_error
from fsmrun.schemas.config import ExperimentConfig


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false/null, lists), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _section(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unknown_key(key: str, part: str, prefix: str, model: type[BaseModel]) -> UserError:
    valid = list(model.model_fields)
    close = difflib.get_close_matches(part, valid, n=3)
    where = f"under {prefix}" if prefix else "at the top level"
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(f"unknown key {key!r} in --set{hint}; valid keys {where}: {', '.join(valid)}")


def parse_assignment(assignment: str) -> tuple[list[str], Any]:
    """'train.lr=0.01' -> (['train', 'lr'], 0.01), the path checked against the schema."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects key.path=value (e.g. train.lr=0.01), got {assignment!r}")
    path = key.split(".")
    model: type[BaseModel] = ExperimentConfig
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth])
        if part not in model.model_fields:
            raise _unknown_key(key, part, prefix, model)
        section = _section(model, part)
        last = depth == len(path) - 1
        if section is None and not last:
            raise UserError(
                f"--set {key}: {'.'.join(path[: depth + 1])} is a value, not a section; "
                f"set it whole, e.g. --set {'.'.join(path[: depth + 1])}=<value>"
            )
        if section is not None and last:
            raise UserError(
                f"--set {key}: {key} is a section; set one of its keys: "
                + ", ".join(f"{key}.{k}" for k in section.model_fields)
            )
        if section is not None:
            model = section
    if model.model_fields[path[-1]].annotation in (str, str | None):  # alphabet=01: keep text
        return path, raw
    return path, parse_value(raw)


def apply_overrides(exp: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """`exp` with dotted-path overrides merged in and validated again (UserError if invalid)."""
    if not overrides:
        return exp
    doc = exp.model_dump()
    for key, value in overrides.items():
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return ExperimentConfig.model_validate(doc)
    except ValidationError as err:
        raise UserError(describe_validation_error(err, "invalid value")) from None


def collect_overrides(assignments: list[str], flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted path -> value from `--set` assignments, then the flags that were given (they win)."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        overrides[".".join(path)] = value
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides
