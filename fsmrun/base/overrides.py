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


def fields_with_sections_kept(model: BaseModel, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """`model.model_dump()` for validating again, except that its sections (fields holding a
    config model) stay the validated objects they are: pydantic takes such an object as it is,
    so the copy shares them instead of checking them again. `exclude`: fields left out."""
    left_out = set(exclude)
    sections = {
        name: value
        for name in type(model).model_fields
        if name not in left_out and isinstance(value := getattr(model, name), BaseModel)
    }
    return {**model.model_dump(exclude=left_out | set(sections)), **sections}


class ConfigVariants:
    """`apply_overrides` for many configs made from a few bases (a sweep's cells), with the
    same result: only the sections an override reaches are dumped and validated again, each
    (section, overrides) pair once; the other sections are passed on as they are. So
    1,800 language files x 4 architectures validate 4 model sections, not 7,200, and the
    variants share their sections, which `ConfigHasher` then hashes once each."""

    def __init__(self) -> None:
        self._paths: dict[str, tuple[str, ...]] = {}  # dotted key -> path, checked once
        self._made: dict[tuple[int, str], tuple[BaseModel, BaseModel]] = {}

    def apply(self, exp: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """`exp` with `overrides` (dotted key -> value) merged in and validated (OverrideError
        with `apply_overrides`' message if not)."""
        checked = [Override(self._path(key), value) for key, value in overrides.items()]
        try:
            return self._apply(exp, checked)  # type: ignore[return-value]
        except ValidationError:
            return apply_overrides(exp, checked)  # raises, naming the full location

    def _path(self, key: str) -> tuple[str, ...]:
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = check_overrides({key: None})[0].path
        return path

    def _apply(self, model: BaseModel, overrides: list[Override], top: bool = True) -> BaseModel:
        if not overrides:
            return model
        memo = (id(model), repr([(o.path, o.value) for o in overrides]))
        made = self._made.get(memo)
        if made is not None and made[0] is model:  # `is`: an id is only unique while alive
            return made[1]
        inner: dict[str, list[Override]] = {}
        for override in overrides:
            if len(override.path) > 1:
                inner.setdefault(override.path[0], []).append(
                    Override(override.path[1:], override.value)
                )
        doc = fields_with_sections_kept(model)
        for name, nested in inner.items():
            doc[name] = self._apply(getattr(model, name), nested, top=False)
        for override in overrides:  # later ones win, as in apply_overrides
            if len(override.path) == 1:
                doc[override.path[0]] = override.value
        result = type(model).model_validate(doc)
        if not top:  # a whole config is made once per cell: only its sections are shared
            self._made[memo] = (model, result)
        return result
