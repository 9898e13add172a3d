"""Sweeps and reports: the sweep spec (TOML), the sweep record (sweep.json), report rows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CellStatus = Literal["done", "running", "interrupted", "failed", "todo"]
CELL_STATUSES: tuple[str, ...] = ("done", "running", "interrupted", "failed", "todo")

# How far a published number was checked against its paper: "primary" against the paper's own
# table, "secondary" only against a later work that reprints it, "unchecked" not at all.
CheckStatus = Literal["primary", "secondary", "unchecked"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class PublishedResult(_Doc):
    """A number a paper published that a suite reproduces, with where it was published."""

    experiment: str = Field(description="The suite's experiment (its name) the number is for.")
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields that select the suite's cells, e.g. {'model.arch': 'lstm'}.",
    )
    metric: str = Field(
        default="test_ood.length_mean_acc",
        description="Our metric ('<split>.<field>') that corresponds to the published one.",
    )
    value: float = Field(ge=0.0, le=1.0, description="The published number, as a fraction.")
    aggregate: Literal["max", "mean"] = Field(
        default="max", description="How the paper aggregated over seeds (and learning rates)."
    )
    source: str = Field(description="Paper, table and cell, e.g. 'Deletang et al. 2023, Table 2'.")
    checked: CheckStatus = Field(
        default="unchecked",
        description="'primary': checked against the paper's own table; 'secondary': agrees "
        "with a later work that reprints the table (named in checked_note), not checked "
        "against the paper; 'unchecked': typed without the table at hand. Reports print it "
        "beside the value.",
    )
    checked_note: str = Field(
        default="",
        description="Where and how the value was checked (the reprint, its table or file) "
        "and anything that differs; required with checked = 'secondary'.",
    )

    @model_validator(mode="after")
    def _secondary_names_its_reprint(self) -> PublishedResult:
        # A secondary check is only as good as the reprint: without its name nobody can
        # follow it up.
        if self.checked == "secondary" and not self.checked_note.strip():
            raise ValueError("checked = 'secondary' needs a checked_note naming the reprint")
        return self


class PublishedComparison(_Doc):
    """A published number beside what the matching runs measured (None: no run yet)."""

    published: PublishedResult
    n_runs: int = Field(description="Matching runs with a value of the metric.")
    mean: float | None = Field(description="Mean of the metric over the matching runs.")
    max: float | None = Field(description="Maximum of the metric over the matching runs.")

    @property
    def selection(self) -> str:
        """'parity model.arch=lstm': the experiment and the fields that select its cells."""
        fields = " ".join(f"{k}={v}" for k, v in self.published.where.items())
        return f"{self.published.experiment} {fields}".strip()


class SweepSpec(_Doc):
    """A grid of runs: experiments x cases x grid values x seeds, each cell an ordinary run.

    Overrides apply in order: `set`, then the case, then the grid values, then the seed.
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", description="Sweep name (its folder under results/sweeps)."
    )
    description: str = Field(default="", description="What the sweep is about.")
    experiments: list[str] = Field(
        default_factory=list,
        description="Built-in experiment names or paths to experiment TOML files (at least one, "
        "unless `languages` names experiment TOMLs).",
    )
    languages: str | None = Field(
        default=None,
        description="A folder of languages as one more axis: a glob of AT&T automaton files or "
        "of experiment TOMLs, one cell per file, named after it. An AT&T file replaces the "
        "language of each experiment (which gives the corpus, model and training); a TOML is "
        "an experiment of its own.",
    )
    symbols: str | None = Field(
        default=None,
        description="Symbol table of every AT&T file of `languages` ('symbol id' lines, id 0 "
        "= epsilon, as MLRegTest's `<EPS> 0`); default: `<file stem>.syms` beside each file "
        "where there is one, else the arc labels.",
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides applied to every cell, e.g. {'train.epochs': 3}.",
    )
    cases: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Explicit list of override sets (one cell each; none: one empty case).",
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted key -> values; every combination is a cell (cartesian product).",
    )
    seeds: list[int] = Field(default=[0], min_length=1, description="Seeds of every cell.")
    published: list[PublishedResult] = Field(
        default_factory=list,
        description="Published numbers the suite reproduces; reports print them beside ours.",
    )


class SweepCell(_Doc):
    """One cell of a sweep: an experiment with overrides, i.e. one config hash."""

    index: int = Field(description="Position in the expanded grid (0-based).")
    source: str = Field(description="The experiment as given in the spec (name or path).")
    experiment: str = Field(description="The experiment's name (its folder under results).")
    overrides: dict[str, Any] = Field(description="Dotted key -> value, the seed included.")
    config_hash: str = Field(description="config_hash of the cell's ExperimentConfig.")
    run_id: str | None = Field(default=None, description="The cell's run, once it has one.")
    status: CellStatus = Field(description="done, running, interrupted, failed or todo.")
    error: str | None = Field(default=None, description="Why the cell failed, if it did.")


class SweepRecord(_Doc):
    """<results>/sweeps/<name>-<hash12>/sweep.json, written by the coordinating process only."""

    format: Literal["fsmrun-sweep-1"] = "fsmrun-sweep-1"
    sweep_id: str = Field(description="'<name>-<hash12>' (the folder name).")
    sweep_hash: str = Field(description="sha256 over the cells' config hashes, in order.")
    spec: SweepSpec
    created: float = Field(description="Unix time the sweep was first started.")
    updated: float = Field(description="Unix time of the last change.")
    threads: int | None = Field(
        default=None,
        description="torch intra-op threads of every cell, fixed when the sweep first started "
        "(CPU results depend on it).",
    )
    counts: dict[str, int] = Field(description="Cells per status.")
    cells: list[SweepCell]


class MetricStats(_Doc):
    """One metric over the runs of a group (seeds), beside its baseline."""

    n: int = Field(description="Runs with a value.")
    mean: float | None
    median: float | None = None
    std: float | None = Field(description="Sample standard deviation (n - 1); None below n=2.")
    min: float | None
    max: float | None
    baseline: float | None = Field(
        default=None, description="Mean of the metric's majority-class baseline, if it has one."
    )


class BinStats(_Doc):
    """A metric over the runs of a group in one length bin."""

    metric: str = Field(description="The metric, e.g. 'test_ood.string_acc'.")
    lo: int = Field(description="Shortest length in the bin.")
    hi: int = Field(description="Longest length in the bin.")
    stats: MetricStats


class ReportRow(_Doc):
    """One group of `fsmrun report`: runs sharing the grouping fields, aggregated over seeds."""

    group: dict[str, Any] = Field(description="Grouping field -> value.")
    n_runs: int
    seeds: list[int]
    run_ids: list[str]
    metrics: dict[str, MetricStats] = Field(description="Metric -> statistics.")
    bins: list[BinStats] = Field(default_factory=list, description="Per length bin (--bins).")


class Report(_Doc):
    """`fsmrun report --json`. Statistics are rounded to `digits` decimals, as every other
    form of the report shows them."""

    by: list[str] = Field(description="Grouping fields.")
    split_by: list[str] = Field(
        default_factory=list,
        description="Config fields that varied within a --by group, so its runs were not "
        "seeds of one config: groups were split by them (empty with --pool).",
    )
    agg: Literal["mean", "median", "max"] = Field(
        default="mean", description="The statistic shown first for each metric (--agg)."
    )
    digits: int = Field(default=3, description="Decimals every statistic is rounded to.")
    notes: list[str] = Field(
        default_factory=list,
        description="What the reader must know: splits, repeated runs counted once, sweeps "
        "still running.",
    )
    metrics: list[str] = Field(description="Metrics aggregated ('<split>.<field>').")
    checkpoint: Literal["best", "last"]
    rows: list[ReportRow]
    published: list[PublishedComparison] = Field(
        default_factory=list,
        description="The published numbers of the suites or sweeps the report names, beside "
        "the matching runs (mean and max rounded to `digits`), each with how far it was "
        "checked.",
    )
