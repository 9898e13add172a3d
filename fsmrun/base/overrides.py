"""Dotted-path overrides of an experiment config (`train.lr=0.01`), checked against the schema.

A key is split and checked once, into an `Override` (its path and value), which is then handed
on: `--set` text through `parse_assignment`, flags and sweep tables through `check_overrides`.
Overrides are merged into `exp.model_dump()` and the result validated again, so every value
passes the same checks as a TOML file; an unknown key names itself and the valid keys.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.schemas.config import ExperimentConfig


class OverrideError(UserError):
    """An override that names no config field or sets an invalid value."""


@dataclass(frozen=True)
class Override:
    """One override whose path names a config value (checked when it was made)."""

    path: tuple[str, ...]
    value: Any

    @property
    def key(self) -> str:
        """The dotted key, 'train.lr'."""
        return ".".join(self.path)


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
    return _check_path(key, key.strip().split("."), option)


def _check_path(key: str, path: list[str], option: str = "--set") -> type[BaseModel]:
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


def parse_assignment(assignment: str, option: str = "--set") -> Override:
    """'train.lr=0.01' -> Override(('train', 'lr'), 0.01), the path checked against the schema
    (errors name `option`); the value is JSON where it parses, except for text fields
    (alphabet=01 stays '01')."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(
            f"{option} expects key.path=value (e.g. train.lr=0.01), got {assignment!r}"
        )
    path = key.split(".")
    model = _check_path(key, path, option)
    if model.model_fields[path[-1]].annotation in (str, str | None):  # alphabet=01: keep text
        return Override(tuple(path), raw)
    return Override(tuple(path), parse_value(raw))


def check_overrides(overrides: Mapping[str, Any]) -> list[Override]:
    """Dotted key -> value (flags, sweep tables, Python callers) as checked Overrides."""
    checked = []
    for key, value in overrides.items():
        path = key.strip().split(".")
        _check_path(key, path)
        checked.append(Override(tuple(path), value))
    return checked


def collect_overrides(assignments: list[str], flags: Mapping[str, Any]) -> list[Override]:
    """`--set` assignments, then the flags that were given (they win), each checked once."""
    given = {k: v for k, v in flags.items() if v is not None}
    return [*map(parse_assignment, assignments), *check_overrides(given)]


def apply_overrides(
    exp: ExperimentConfig, overrides: Mapping[str, Any] | Iterable[Override]
) -> ExperimentConfig:
    """`exp` with the overrides merged in (later ones win) and validated again (OverrideError
    if not). A mapping of dotted keys is checked here; Overrides were checked when made."""
    checked = check_overrides(overrides) if isinstance(overrides, Mapping) else list(overrides)
    if not checked:
        return exp
    doc = exp.model_dump()
    for override in checked:
        *parents, leaf = override.path
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = override.value
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
