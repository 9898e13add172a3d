"""Built-in experiment definitions (one TOML file each in this package) and their loader.

`load_experiment` takes a built-in name (`list_experiments()`) or a path to a TOML file with
the tables `[data]`, `[model]`, `[train]` of an `ExperimentConfig`.
"""

from __future__ import annotations

import difflib
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fsmrun.base.errors import UserError, describe_validation_error
from fsmrun.schemas.config import ExperimentConfig

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None


class ExperimentNotFound(UserError):
    """No built-in experiment of that name and no such TOML file."""


class ExperimentFileError(UserError):
    """An experiment file that is not valid TOML or holds an invalid value."""


def _builtin_files() -> dict[str, Traversable]:
    folder = resources.files(__name__)
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    }


def list_experiments() -> list[str]:
    """Names of the built-in experiments, sorted."""
    return sorted(_builtin_files())


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """The table of TOML `text`; ExperimentFileError naming `source` when it is malformed."""
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ExperimentFileError(
            f"{source}: reading TOML needs Python 3.11+ (tomllib) or the tomli package "
            f"(pip install tomli)"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ExperimentFileError(f"{source}: malformed TOML: {err}") from None


def parse_experiment(text: str, source: str, default_name: str | None = None) -> ExperimentConfig:
    """Validate TOML text as an ExperimentConfig; `source` names the file in error messages.

    A file without `name` gets `default_name` (the file stem when loading a file).
    """
    doc = parse_toml(text, source)
    if default_name is not None:
        doc.setdefault("name", default_name)
    try:
        return ExperimentConfig.model_validate(doc)
    except ValidationError as err:
        what = f"{source}: invalid experiment"
        raise ExperimentFileError(describe_validation_error(err, what)) from None


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or "/" in name_or_path or "\\" in name_or_path


def load_experiment(name_or_path: str) -> ExperimentConfig:
    """The ExperimentConfig of a built-in name, or of a TOML file when given a path.

    A string ending in `.toml` or containing a path separator is a path; anything else a
    built-in name. Raises ExperimentNotFound (with close names suggested) or
    ExperimentFileError (malformed TOML or an invalid value; the message names the file and
    the field).
    """
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ExperimentNotFound(f"no experiment file {str(path)!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ExperimentFileError(f"{path}: cannot read: {err}") from None
        return parse_experiment(text, str(path), default_name=path.stem)
    builtins = _builtin_files()
    if name_or_path not in builtins:
        close = difflib.get_close_matches(name_or_path, sorted(builtins), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ExperimentNotFound(
            f"no built-in experiment {name_or_path!r}{hint} "
            f"(built-ins: {', '.join(sorted(builtins))}; or give a path to a .toml file)"
        )
    entry = builtins[name_or_path]
    return parse_experiment(
        entry.read_text(encoding="utf-8"), f"{name_or_path}.toml", default_name=name_or_path
    )
