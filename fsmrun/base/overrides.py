"""Dotted-path overrides of an experiment config (`train.lr=0.01`), checked against the schema.

Overrides are merged into `exp.model_dump()` and the result validated again, so every value
passes the same checks as a TOML file; an unknown key names itself and the valid keys.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.schemas.config import ExperimentConfig


class OverrideError(UserError):
    """An override that names no config field or sets an invalid value."""


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


def _unknown_key(
    key: str, part: str, prefix: str, model: type[BaseModel], option: str
) -> OverrideError:
    valid = list(model.model_fields)
    close = difflib.get_close_matches(part, valid, n=3)
    where = f"under {prefix}" if prefix else "at the top level"
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return OverrideError(
        f"unknown key {key!r} in {option}{hint}; valid keys {where}: {', '.join(valid)}"
    )


def check_key(key: str, option: str = "--set") -> type[BaseModel]:
    """The model holding the leaf of dotted `key` (OverrideError if `key` is not a value);
    `option` is what the user typed the key into (--set, --grid, --field), named in errors."""
    path = key.strip().split(".")
    model: type[BaseModel] = ExperimentConfig
    for depth, part in enumerate(path):
        prefix = ".".join(path[:depth])
        if part not in model.model_fields:
            raise _unknown_key(key, part, prefix, model, option)
        section = _section(model, part)
        last = depth == len(path) - 1
        if section is None and not last:
            raise OverrideError(
                f"{option} {key}: {'.'.join(path[: depth + 1])} is a value, not a section; "
                f"set it whole, e.g. {option} {'.'.join(path[: depth + 1])}=<value>"
            )
        if section is not None and last:
            raise OverrideError(
                f"{option} {key}: {key} is a section; name one of its keys: "
                + ", ".join(f"{key}.{k}" for k in section.model_fields)
            )
        if section is not None:
            model = section
    return model


def parse_assignment(assignment: str, option: str = "--set") -> tuple[list[str], Any]:
    """'train.lr=0.01' -> (['train', 'lr'], 0.01), the path checked against the schema;
    errors name `option`."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(
            f"{option} expects key.path=value (e.g. train.lr=0.01), got {assignment!r}"
        )
    path = key.split(".")
    model = check_key(key, option)
    if model.model_fields[path[-1]].annotation in (str, str | None):  # alphabet=01: keep text
        return path, raw
    return path, parse_value(raw)


def apply_overrides(exp: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """`exp` with dotted-path overrides merged in and validated again (OverrideError if not)."""
    if not overrides:
        return exp
    doc = exp.model_dump()
    for key, value in overrides.items():
        check_key(key)
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    try:
        return ExperimentConfig.model_validate(doc)
    except ValidationError as err:
        raise OverrideError(describe_validation_error(err, "invalid value")) from None


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'arch': 'lstm'}} -> {'model.arch': 'lstm'} (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
