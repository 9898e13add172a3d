"""The base of every config model: frozen, unknown keys refused, booleans not taken as numbers."""

from __future__ import annotations

import functools
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator


def _is_number_field(annotation: Any) -> bool:
    """Whether a field holds a plain number (int or float, maybe optional), not a bool."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = set(get_args(annotation))
        return bool(args & {int, float}) and bool not in args
    return False


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_booleans_as_numbers(cls, data: Any) -> Any:
        # Pydantic reads true as 1 in a number field: `n_train = true` would train on one
        # string and exit 0. A boolean where a number belongs is a mistake; say so.
        if isinstance(data, dict):
            for name in _number_fields(cls):
                value = data.get(name)
                if isinstance(value, bool):
                    shown = "true" if value else "false"
                    raise ValueError(f"{name} = {shown} is a boolean; {name} takes a number")
        return data


@functools.cache
def _number_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` that hold plain numbers; looked up once per class, since every
    run folder read by a reindex validates its files against the same few models."""
    return tuple(n for n, f in model.model_fields.items() if _is_number_field(f.annotation))
