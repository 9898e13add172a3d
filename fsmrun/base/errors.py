"""fsmrun's error hierarchy and the one formatter of validation errors: `UserError` (the user
can fix it; exit 2), `EnvironmentFailure` (the OS refused; exit 1); anything else is a bug."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class FsmrunError(Exception):
    """Base of every error fsmrun raises on purpose."""


class UserError(FsmrunError, ValueError):
    """A mistake a user can fix: bad config or value, unknown run, unfillable corpus, device."""


class EnvironmentFailure(FsmrunError):
    """The operating system refused a file operation; names the file and the OS reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    @classmethod
    def from_os_error(
        cls, err: OSError, path: str | os.PathLike[str] | None = None
    ) -> EnvironmentFailure:
        where = path if path is not None else (err.filename or "(unknown file)")
        return cls(where, err.strerror or str(err))


def describe_validation_error(
    err: ValidationError, what: str = "invalid configuration", *, strip_loc: int = 0
) -> str:
    """One line for every problem: `what: loc: message (got value); loc: ...`. `strip_loc`
    drops that many leading parts of each location (a table read on its own, not nested)."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"][strip_loc:]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if e["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{loc}: {msg}{shown}")
    return f"{what}: " + "; ".join(parts)
