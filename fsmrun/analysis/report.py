"""Reports: completed runs grouped by config fields and aggregated over seeds (n, mean, std,
min, max of chosen metrics beside their baselines, optionally per length bin). No torch.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fsmrun.analysis.analysis_summary import ANALYSIS_NUMBERS
from fsmrun.analysis.report_stats import summarize, summary
from fsmrun.base.errors import UserError
from fsmrun.base.hashing import config_hash, unhashed_fields
from fsmrun.base.overrides import flatten
from fsmrun.runs.index_columns import language_of, seedless_fields, seedless_key
from fsmrun.runs.labels import is_tag_field, tag_value
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import BinMetrics, Metrics, SplitMetrics
from fsmrun.schemas.sweep import BinStats, Report

DEFAULT_BY = ["experiment", "model.arch", "model.pos_encoding"]
DEFAULT_METRICS = ["test.string_acc", "test_ood.string_acc"]
AGGREGATES = ("mean", "median", "max")  # max over seeds: what Deletang et al. report
DEFAULT_DIGITS = 3
SPLITS = ("val", "test", "test_ood")
ANALYSIS_PREFIX = "analysis"  # report --metric analysis.<name>: numbers of `fsmrun analyze`
BASELINES = {"string_acc": "string_baseline", "class_acc": "class_baseline"}
# Fields that may differ between the seeds of one configuration (seedless_key leaves them
# out): the seed and what config_hash leaves out but the name (kept as `experiment`).
PER_RUN_FIELDS = frozenset(["seed", *(f for f in unhashed_fields() if f != "name")])
_NUMERIC = [
    name for name, f in SplitMetrics.model_fields.items() if name not in ("n_strings", "bins")
]


class ReportError(UserError):
    """An unknown metric, field or selection."""


@dataclass(frozen=True)
class ReportRun:
    """A completed run: its id, config and metrics."""

    run_id: str
    config: ExperimentConfig
    metrics: Metrics
    analysis: dict[str, float | None] | None = None  # `fsmrun analyze` numbers, when analysed
    tags: dict[str, str] = dataclasses.field(default_factory=dict)  # for `tag.KEY` groups
    updated: float = 0.0  # run.json's last change: the newest of repeated runs counts

    # What build_report asks of a run; report_index.IndexedReportRun answers the same from
    # an index row without reading the folder.
    @property
    def seed(self) -> int:
        return self.config.seed

    def config_key(self) -> str:
        """Equal for runs of one config and seed (repeats count once)."""
        return config_hash(self.config)

    def seedless_key(self) -> str:
        """Equal for runs whose configs differ at most in the seed."""
        return seedless_key(self.config)

    def seedless_fields(self, whole: bool = False) -> dict[str, Any]:
        return seedless_fields(self.config, whole)

    def value(self, field: str) -> Any:
        """`run_value`: a config field or a tag."""
        return run_value(self, field)

    def metric(self, checkpoint: str, split: str, field: str) -> float | None:
        part = _split(self.metrics, checkpoint, split)
        return getattr(part, field) if part is not None else None

    def metric_getter(
        self, checkpoint: str, split: str, field: str
    ) -> Callable[[ReportRun], float | None]:
        """`metric` of a run of this kind, as one function for many runs."""
        return operator.methodcaller("metric", checkpoint, split, field)

    def analysis_value(self, field: str) -> float | None:
        return (self.analysis or {}).get(field)

    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]:
        part = _split(self.metrics, checkpoint, split)
        return part.bins if part is not None else []


class RunLike(Protocol):
    """A completed run as build_report reads it (ReportRun, or an index row)."""

    run_id: str
    updated: float

    @property
    def seed(self) -> int: ...
    def config_key(self) -> str: ...
    def seedless_key(self) -> str: ...
    def seedless_fields(self, whole: bool = False) -> dict[str, Any]:
        """Its config's `seedless_fields` (`whole`: all of them, where a run keeps less)."""
        ...

    def value(self, field: str) -> Any: ...
    def metric(self, checkpoint: str, split: str, field: str) -> float | None: ...
    def metric_getter(self, checkpoint: str, split: str, field: str) -> Callable[[Any], Any]: ...
    def analysis_value(self, field: str) -> float | None: ...
    def bins(self, checkpoint: str, split: str) -> list[BinMetrics]: ...


def field_value(config: ExperimentConfig, field: str) -> Any:
    """A config value by dotted key ('experiment' for the name, 'language' for an AT&T file's
    stem or else the name); pos_encoding of a recurrent model is None (it has none)."""
    flat = flatten(config.model_dump(mode="json"))
    flat["experiment"] = flat.pop("name")
    flat["language"] = language_of(config)
    if field not in flat:
        raise ReportError(f"unknown config field {field!r}; e.g. {', '.join(list(flat)[:8])}")
    if field == "model.pos_encoding" and config.model.arch != "transformer":
        return None
    return flat[field]


def run_value(run: ReportRun, field: str) -> Any:
    """`field_value` of the run's config, or the value of its tag for `tag.KEY` (None when it
    has no such tag)."""
    return tag_value(run.tags, field) if is_tag_field(field) else field_value(run.config, field)


def filter_runs(runs: list[ReportRun], where: dict[str, str]) -> list[ReportRun]:
    """Runs whose config fields (or `tag.KEY` tags) equal the given values (compared as text)."""
    return [r for r in runs if all(str(run_value(r, k)) == v for k, v in where.items())]


# ---------------------------------------------------------------------------- aggregation


def check_metric(name: str) -> tuple[str, str]:
    split, _, field = name.partition(".")
    if split == ANALYSIS_PREFIX and field in ANALYSIS_NUMBERS:  # from analysis/analysis.json
        return split, field
    if split not in SPLITS or field not in _NUMERIC:
        raise ReportError(
            f"unknown metric {name!r}; use <split>.<field>: split one of {', '.join(SPLITS)}, "
            f"field one of {', '.join(_NUMERIC)}; or analysis.<name>, name one of "
            f"{', '.join(ANALYSIS_NUMBERS)}"
        )
    return split, field


def _split(metrics: Metrics, checkpoint: str, split: str) -> SplitMetrics | None:
    return getattr(metrics.best if checkpoint == "best" else metrics.last, split)


def _bin_stats(
    runs: list[RunLike], name: str, checkpoint: str, digits: int | None = None
) -> list[BinStats]:
    split, field = check_metric(name)
    if field not in BinMetrics.model_fields:
        return []
    by_bin: dict[tuple[int, int], list[BinMetrics]] = {}
    for run in runs:
        for b in run.bins(checkpoint, split):
            by_bin.setdefault((b.lo, b.hi), []).append(b)
    base = BASELINES.get(field)
    return [
        BinStats(
            metric=name,
            lo=lo,
            hi=hi,
            stats=summarize(
                [getattr(b, field) for b in bins],
                [getattr(b, base) for b in bins] if base else None,
                digits,
            ),
        )
        for (lo, hi), bins in sorted(by_bin.items())
    ]


_Run = TypeVar("_Run", bound=RunLike)


def dedupe(runs: list[_Run]) -> tuple[list[_Run], int]:
    """One run per config and seed (config_hash covers the seed): the newest completed one;
    and how many repeats were left out. A child run (an extension) has its own config."""
    keys = [run.config_key() for run in runs]
    if len(set(keys)) == len(keys):
        return runs, 0  # the usual case, and the index's runs: no repeats
    newest: dict[str, _Run] = {}
    for run in runs:
        key = run.config_key()
        if key not in newest or (run.updated, run.run_id) > (
            newest[key].updated,
            newest[key].run_id,
        ):
            newest[key] = run
    kept = set(map(id, newest.values()))
    return [r for r in runs if id(r) in kept], len(runs) - len(newest)


def configurations(runs: list[_Run], by: list[str]) -> list[list[_Run]]:
    """`runs` in lists of the seeds of one configuration (their seedless key) that agree on
    the `by` fields a seed may change (the seed, tags, fields config_hash leaves out): every
    config field a report groups or splits by has one value in each list, so it is asked of
    one run per list."""
    per_run = [f for f in by if f in PER_RUN_FIELDS or is_tag_field(f)]
    found: dict[Any, list[_Run]] = {}
    for run in runs:
        key = run.seedless_key()
        if per_run:
            key = (key, *(str(run.value(f)) for f in per_run))
        found.setdefault(key, []).append(run)
    return list(found.values())


def varying_fields(
    configs: list[list[_Run]], by: list[str], values: list[tuple[Any, ...]]
) -> list[str]:
    """Config fields (besides the seed) whose values differ between the `configurations` of
    one `by` group: such a group is not the seeds of one configuration. Only groups with
    more than one seedless key have such fields, and only one run per key is looked into.
    `values`: each configuration's `by` values."""
    groups: dict[tuple[str, ...], dict[str, RunLike]] = {}
    for runs, found in zip(configs, values, strict=True):
        run = runs[0]
        groups.setdefault(tuple(map(str, found)), {}).setdefault(run.seedless_key(), run)
    varying: dict[str, None] = {}
    for distinct in groups.values():
        if len(distinct) < 2:
            continue
        found = _differing([run.seedless_fields() for run in distinct.values()], by)
        if not found:  # what differs is not in the index (a recurrent model's pos_encoding)
            found = _differing([run.seedless_fields(whole=True) for run in distinct.values()], by)
        varying.update(dict.fromkeys(found))
    return list(varying)


def _differing(members: list[dict[str, Any]], by: list[str]) -> list[str]:
    """The fields besides `by` whose values (as JSON decodes them) differ among the `members`
    that have them (a recurrent model has no pos_encoding to compare)."""
    first, *others = members
    if all(other.keys() == first.keys() for other in others):
        # one comparison per field and member, no generator each (16,667 groups of a
        # 100,000-run report by language compare 60 fields each)
        differ = set()
        for other in others:
            differ.update([name for name, value in other.items() if value != first[name]])
        return [name for name in first if name in differ and name not in by]
    found = []
    for name in dict.fromkeys(name for member in members for name in member):
        values = [member[name] for member in members if name in member]
        if name not in by and any(value != values[0] for value in values[1:]):
            found.append(name)
    return found


_by_seed = operator.attrgetter("seed", "run_id")  # the order of a group's runs
_seed, _run_id = operator.attrgetter("seed"), operator.attrgetter("run_id")


def _hashable(value: Any) -> Any:
    """`value` with its lists as tuples and its objects as sorted item tuples: a group key."""
    if isinstance(value, (list, tuple)):
        return tuple(map(_hashable, value))
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def build_report(
    runs: list[RunLike],
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    checkpoint: str = "best",
    bins: bool = False,
    *,
    agg: str = "mean",
    digits: int | None = DEFAULT_DIGITS,
    pool: bool = False,
    repeats: int = 0,
) -> Report:
    """Group `runs` by the `by` fields (sorted by group) and aggregate `metrics` over them.

    Honest by construction: repeated runs of one config and seed count once (the newest); a
    group whose runs differ in more than the seed is split by the fields that differ (named
    in `split_by` and a note), unless `pool`; `bins` never pools two experiments' bins.
    `repeats`: repeated runs the caller already left out (report_index dedupes in the index).
    """
    options = {"agg": agg, "digits": digits, "pool": pool, "repeats": repeats}
    return Report.model_validate(report_document(runs, by, metrics, checkpoint, bins, **options))


def report_document(
    runs: list[RunLike],
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    checkpoint: str = "best",
    bins: bool = False,
    *,
    agg: str = "mean",
    digits: int | None = DEFAULT_DIGITS,
    pool: bool = False,
    repeats: int = 0,
) -> dict[str, Any]:
    """`build_report`'s Report as plain data, the fields in the Report's order (its JSON is
    the Report's JSON): `report --json` writes it as it is, where validating the 100,000
    objects of a report of 100,000 runs would take a quarter of the time."""
    by = by or DEFAULT_BY
    metrics = metrics or DEFAULT_METRICS
    if agg not in AGGREGATES:
        raise ReportError(f"--agg must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    if digits is not None and not 0 <= digits <= 12:
        raise ReportError(f"--digits must be between 0 and 12, got {digits}")
    parsed = {m: check_metric(m) for m in metrics}
    for name in by:
        for run in runs[:1]:
            run.value(name)  # an unknown field is named before anything else
    runs, dropped = dedupe(runs)
    repeats += dropped
    notes = []
    if repeats:
        notes.append(
            f"{repeats} repeated run(s) of a config and seed already reported counted once "
            "(the newest completed)"
        )
    configs = configurations(runs, by)
    by_values = [tuple(members[0].value(f) for f in by) for members in configs]
    split = [] if pool else varying_fields(configs, by, by_values)
    if pool and bins:  # length bins of two experiments or languages never share a row
        varying = varying_fields(configs, by, by_values)
        split = [f for f in varying if f == "experiment" or f.startswith("data.")]
    if split:
        notes.append(
            f"groups split by {', '.join(split)}: those fields differ within a --by group, so "
            "its runs are not seeds of one config (--pool pools them anyway)"
        )
    keys = [*by, *split]
    groups: dict[tuple[Any, ...], list[RunLike]] = {}
    shown: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # list values (train.betas) as given
    for members, key in zip(configs, by_values, strict=True):
        if split:  # each field has one value among them (see configurations)
            key += tuple(members[0].value(f) for f in split)
        try:
            groups.setdefault(key, []).extend(members)
        except TypeError:  # a list value (train.betas): grouped by its tuple form
            hashable = _hashable(key)
            shown.setdefault(hashable, key)
            groups.setdefault(hashable, []).extend(members)
    # Each metric (and its baseline) as one function of a run: a report of 100,000 runs
    # asks 400,000 values.
    plan = []
    for name, (split_name, field) in parsed.items():
        if split_name == ANALYSIS_PREFIX or not runs:
            plan.append((name, None, field))
            continue
        base = BASELINES.get(field)
        getters = (
            runs[0].metric_getter(checkpoint, split_name, field),
            runs[0].metric_getter(checkpoint, split_name, base) if base else None,
        )
        plan.append((name, getters, field))
    order = sorted(groups, key=lambda k: [(v is None, str(v)) for v in shown.get(k, k)])
    rows: list[dict[str, Any]] = []
    for key in order:
        members = groups[key]
        if len(members) > 1:
            members.sort(key=_by_seed)
        stats = {}
        for name, getters, field in plan:
            if getters is None:  # analysis: a mean of 0/1 values is the fraction of seeds
                stats[name] = summary([r.analysis_value(field) for r in members], digits=digits)
                continue
            value, base = getters
            stats[name] = summary(
                list(map(value, members)), list(map(base, members)) if base else None, digits
            )
        rows.append(
            {  # a ReportRow, validated with the others by Report
                "group": dict(zip(keys, shown.get(key, key), strict=True)),
                "n_runs": len(members),
                "seeds": list(map(_seed, members)),
                "run_ids": list(map(_run_id, members)),
                "metrics": stats,
                "bins": [b for m in metrics for b in _bin_stats(members, m, checkpoint, digits)]
                if bins
                else [],
            }
        )
    return {
        "by": by,
        "split_by": split,
        "agg": agg,
        "digits": DEFAULT_DIGITS if digits is None else digits,
        "notes": notes,
        "metrics": metrics,
        "checkpoint": checkpoint,
        "rows": rows,
        "published": [],
    }
