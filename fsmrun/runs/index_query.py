"""Which runs a listing or report asks for (`RunQuery`): experiment, status, `--where`
conditions on config fields and tags, `--since`, the config hashes of a sweep, sort and limit;
as one SQL WHERE clause for the index and as the same test in Python for runs read from folders.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsmrun.base.overrides import OverrideError, check_key
from fsmrun.runs.index_columns import DERIVED_FIELDS, RUN_COLUMN_TYPES, TAG_PREFIX, IndexedRun
from fsmrun.runs.layout import ResultsFolderError
from fsmrun.schemas.run_row import RunRow

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Condition:
    """`key=value` of --where: a config field (dotted), a derived field or `tag.KEY`."""

    key: str
    text: str  # the value as typed

    @property
    def value(self) -> Any:
        """The typed value: JSON where it parses (3e-3, true, null), else the text itself."""
        if self.text in ("True", "False", "None"):  # Python spellings, as a report prints them
            return {"True": True, "False": False, "None": None}[self.text]
        try:
            return json.loads(self.text)
        except ValueError:
            return self.text

    def matches(self, found: Any) -> bool:
        """Whether a stored value equals the typed value or, as text, the value as typed."""
        value = self.value
        if isinstance(value, (list, dict)) or isinstance(found, (list, dict)):
            return json.dumps(found) == json.dumps(value)
        if value is None or found is None:
            return value is None and found is None
        return found == value or (isinstance(found, str) and found == self.text)


def parse_where(items: list[str]) -> list[Condition]:
    """`--where key=value` items as Conditions (ResultsFolderError naming a bad one)."""
    conditions = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ResultsFolderError(
                f"--where expects key=value, e.g. model.arch=lstm, got {item!r}"
            )
        if not key.startswith(TAG_PREFIX) and key not in DERIVED_FIELDS:
            try:
                check_key(key)
            except OverrideError as exc:
                raise ResultsFolderError(
                    str(exc).replace("--set", "--where") + f" (or {TAG_PREFIX}NAME for a tag)"
                ) from None
        conditions.append(Condition(key, text))
    return conditions


def parse_since(text: str, now: float | None = None) -> float:
    """Unix time of `--since`: a date (2026-12-01), a date and time (2026-12-01T14:30) or an
    age (30m, 12h, 3d, 2w)."""
    match = _DURATION.match(text.strip())
    if match:
        now = time.time() if now is None else now
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ResultsFolderError(
            f"--since expects a date (2026-12-01), a date and time (2026-12-01T14:30) or an "
            f"age (30m, 12h, 3d, 2w), got {text!r}"
        ) from None


def json_path(key: str) -> str:
    """SQLite JSON path of a flat key ('$."model.arch"')."""
    return '$."' + key.replace('"', '""') + '"'


@dataclass(frozen=True)
class RunQuery:
    """The runs asked for, in the order asked; None and empty mean no restriction."""

    experiment: str | None = None
    status: str | None = None
    where: tuple[Condition, ...] = ()
    since: float | None = None
    config_hashes: frozenset[str] | None = None  # the cells of a sweep
    folders: frozenset[str] | None = None  # run folders (relative to the root) to keep
    sort: str | None = None  # a RunRow field; default created
    descending: bool = False
    limit: int | None = None

    @property
    def sort_key(self) -> str:
        return self.sort or "created"

    @property
    def newest_only(self) -> bool:
        """A page of runs by creation time with no filter an edit in place could change
        (status, config, tags, sort by a metric): what `index_scan.find_new_runs` serves."""
        return (
            self.limit is not None
            and self.sort_key == "created"
            and self.status is None
            and not self.where
            and self.config_hashes is None
            and self.folders is None
        )

    def sql(self) -> tuple[str, list[Any]]:
        """WHERE clause (without the keyword; '1' when empty) and its arguments, for rows
        whose recorded status is their status now (rows recorded running are read anew)."""
        clauses, args = ["1"], []
        if self.experiment is not None:
            clauses.append("experiment = ?")
            args.append(self.experiment)
        if self.status is not None:
            clauses.append("status = ?")
            args.append(self.status)
        if self.since is not None:
            clauses.append("created >= ?")
            args.append(self.since)
        if self.config_hashes is not None:
            clauses.append("config_hash IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(sorted(self.config_hashes)))
        if self.folders is not None:
            clauses.append("folder IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(sorted(self.folders)))
        for cond in self.where:
            column, key = (
                ("tags", cond.key[len(TAG_PREFIX) :])
                if cond.key.startswith(TAG_PREFIX)
                else ("config", cond.key)
            )
            value = cond.value
            if value is None:
                clauses.append(f"json_type({column}, ?) = 'null'")
                args.append(json_path(key))
            elif isinstance(value, (list, dict)):
                clauses.append(f"json_extract({column}, ?) = json(?)")
                args += [json_path(key), json.dumps(value)]
            else:
                clauses.append(f"json_extract({column}, ?) IN (?, ?)")
                args += [json_path(key), value, cond.text]
        return " AND ".join(clauses), args

    def order_sql(self) -> str:
        """ORDER BY of `compare`: missing values last (by run id), ties by run id."""
        key, direction = self.sort_key, "DESC" if self.descending else "ASC"
        if "NOT NULL" in RUN_COLUMN_TYPES.get(key, ""):  # plain, so an index can serve it
            return f"{key} {direction}, run_id {direction}"
        return (
            f"({key} IS NULL), {key} {direction}, "
            f"(CASE WHEN {key} IS NULL THEN run_id END), run_id {direction}"
        )

    def matches(self, run: IndexedRun, status_now: str) -> bool:
        """The same test as `sql()`, on a run read from its folder (status as it is now)."""
        row = run.row
        if self.experiment is not None and row.experiment != self.experiment:
            return False
        if self.status is not None and status_now != self.status:
            return False
        if self.since is not None and row.created < self.since:
            return False
        if self.config_hashes is not None and row.config_hash not in self.config_hashes:
            return False
        if self.folders is not None and row.folder not in self.folders:
            return False
        for cond in self.where:
            if cond.key.startswith(TAG_PREFIX):
                source, key = run.tags, cond.key[len(TAG_PREFIX) :]
            else:
                source, key = run.config, cond.key
            if source is None or key not in source or not cond.matches(source[key]):
                return False
        return True

    def row_key(self) -> Callable[[RunRow], Any]:
        """Sort key of rows, ordered as `order_sql()`."""
        key, pair = self.sort_key, self.pair_key()
        return lambda row: pair((getattr(row, key), row.run_id))

    def pair_key(self) -> Callable[[tuple[Any, str]], Any]:
        """Sort key of (sort value, run_id) pairs, ordered as `order_sql()`."""
        descending = self.descending

        def compare(a: tuple[Any, str], b: tuple[Any, str]) -> int:
            va, vb = a[0], b[0]
            if (va is None) != (vb is None):
                return 1 if va is None else -1
            if va is None:
                return (a[1] > b[1]) - (a[1] < b[1])
            order = (a > b) - (a < b)
            return -order if descending else order

        return functools.cmp_to_key(compare)
