"""Sweep specs: TOML files and built-in suites, inline grids, and their expansion into cells
(experiments x cases x grid values x seeds), each an ExperimentConfig named by its hash.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fsmrun.base.errors import UserError
from fsmrun.base.hashing import ConfigHasher
from fsmrun.base.overrides import (
    ConfigVariants,
    OverrideError,
    check_key,
    fields_with_sections_kept,
    parse_assignment,
)
from fsmrun.experiments import load_experiment
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.sweep import SweepSpec

SUITES = resources.files("fsmrun.experiments").joinpath("suites")


class SweepError(UserError):
    """A sweep spec, name or grid a user can fix."""


@dataclass(frozen=True)
class Cell:
    """One expanded cell: the experiment as given, its overrides and the resulting config."""

    index: int
    experiment: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    config_hash: str


# ---------------------------------------------------------------------------- specs


def list_suites() -> list[str]:
    """Names of the built-in suites (fsmrun/experiments/suites/*.toml), sorted."""
    return sorted(
        e.name.removesuffix(".toml") for e in SUITES.iterdir() if e.name.endswith(".toml")
    )


def parse_spec(text: str, source: str, default_name: str) -> SweepSpec:
    """Validate TOML text as a SweepSpec (SweepError naming `source` and the field)."""
    if sys.version_info < (3, 11):  # pragma: no cover
        raise SweepError("reading sweep specs needs Python 3.11+ (tomllib)")
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{source}: malformed TOML: {err}") from None
    doc.setdefault("name", default_name)
    try:
        spec = SweepSpec.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SweepError(f"{source}: invalid sweep spec: {where}: {first['msg']}") from None
    check_spec_keys(spec)
    return spec


def load_spec(ref: str) -> SweepSpec:
    """A sweep spec from a TOML path or a built-in suite name."""
    if ref.endswith(".toml") or os.sep in ref or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise SweepError(f"no sweep spec file {ref!r}")
        return parse_spec(read_spec_text(path), str(path), path.stem)
    if ref not in list_suites():
        raise SweepError(
            f"no built-in suite {ref!r} (suites: {', '.join(list_suites())}; "
            "or give a path to a sweep .toml file)"
        )
    text = SUITES.joinpath(f"{ref}.toml").read_text(encoding="utf-8")
    return parse_spec(text, f"suite {ref}", ref)


def read_spec_text(path: Path) -> str:
    """A spec file's text: SweepError for a file that cannot be read or is not UTF-8 text."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SweepError(f"cannot read sweep spec {path}: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SweepError(
            f"{path} is not a UTF-8 text file (byte {err.start}); a sweep spec is TOML text"
        ) from None
    if "\x00" in text:
        raise SweepError(f"{path} is a binary file, not a TOML sweep spec")
    return text


def parse_grid(assignments: list[str]) -> dict[str, list[Any]]:
    """--grid model.arch=transformer,lstm -> {'model.arch': ['transformer', 'lstm']}
    (SweepError naming --grid for a bad key or value)."""
    grid: dict[str, list[Any]] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not raw or not key.strip():
            raise SweepError(
                f"--grid expects key=v1,v2 (e.g. model.arch=transformer,lstm), got {assignment!r}"
            )
        if key.strip() == "seed":
            raise SweepError("set seeds with --seeds, not --grid seed=...")
        try:
            grid[key.strip()] = [
                parse_assignment(f"{key}={v}", "--grid").value for v in raw.split(",")
            ]
        except OverrideError as err:
            raise SweepError(str(err).replace("--set", "--grid")) from None
    return grid


def check_spec_keys(spec: SweepSpec) -> None:
    """Every override key names a config value, and there is an experiment (SweepError)."""
    if not spec.experiments and spec.languages is None:
        raise SweepError("the sweep names no experiment: give `experiments` or `languages`")
    keys = list(spec.set) + [k for case in spec.cases for k in case] + list(spec.grid)
    for key in keys:
        if key == "seed":
            raise SweepError("set seeds with `seeds` (--seeds), not as an override")
        try:
            check_key(key)
        except OverrideError as err:
            raise SweepError(str(err).replace("in --set", "in the sweep")) from None
    for key, values in spec.grid.items():
        if not values:
            raise SweepError(f"grid key {key!r} has no values")


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' and '0-2,9' work too."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, dash, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise SweepError(f"--seeds expects e.g. 0-4 or 0,3,7, got {text!r}") from None
        if last < first:
            raise SweepError(f"--seeds {text!r}: the range {part} runs backwards; write {hi}-{lo}")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise SweepError(f"--seeds {text!r} names no seed; e.g. --seeds 0-4 or --seeds 0,3,7")
    if min(seeds) < 0:
        raise SweepError(f"--seeds expects non-negative seeds, got {text!r}")
    return list(dict.fromkeys(seeds))


def inline_spec(
    experiments: list[str],
    grid: dict[str, list[Any]],
    seeds: list[int],
    overrides: dict[str, Any],
    name: str | None = None,
    languages: str | None = None,
    symbols: str | None = None,
) -> SweepSpec:
    """The spec of `fsmrun sweep EXP... --grid k=v1,v2 --seeds 0-4 --set k=v [--languages
    GLOB]`."""
    default = "_".join(Path(e).stem for e in experiments)[:40] or "sweep"
    spec = SweepSpec(
        name=name or default,
        experiments=experiments,
        set=overrides,
        grid=grid,
        seeds=seeds,
        languages=languages,
        symbols=symbols,
    )
    check_spec_keys(spec)
    return spec


def iter_cells(spec: SweepSpec) -> Iterator[Cell]:
    """Cells in order, one at a time: experiments (x language files) x cases x grid
    combinations x seeds (the grid's combinations are never built as a list).

    Each cell is validated as `apply_overrides` would, but a section no override reaches is
    shared, not copied, and a section an override reaches is validated once per value for all
    base experiments (`ConfigVariants`); hashes are joined from each section's text, made
    once (`ConfigHasher`). 21,600 cells take about a second of CPU, not five."""
    keys = list(spec.grid)
    variants, hasher = ConfigVariants(), ConfigHasher()
    seeds_checked = False
    index = 0
    for source, base in iter_base_experiments(spec):
        for case in spec.cases or [{}]:
            for values in itertools.product(*spec.grid.values()):
                overrides = {**spec.set, **case, **dict(zip(keys, values, strict=True))}
                if not seeds_checked:  # a seed is valid or not in any config: check each once
                    for seed in spec.seeds:
                        _variant(variants, source, base, {**overrides, "seed": seed})
                    seeds_checked = True
                exp = _variant(variants, source, base, overrides, seed=spec.seeds[0])
                hashes = hasher.seeded(exp, spec.seeds)
                for seed, chash in zip(spec.seeds, hashes, strict=True):
                    yield Cell(
                        index,
                        source,
                        {**overrides, "seed": seed},
                        exp.model_copy(update={"seed": seed}),
                        chash,
                    )
                    index += 1


def _variant(
    variants: ConfigVariants,
    source: str,
    base: ExperimentConfig,
    overrides: dict[str, Any],
    seed: int | None = None,
) -> ExperimentConfig:
    """`base` with `overrides`; an error names the cell as before (with `seed`, its first)."""
    try:
        return variants.apply(base, overrides)
    except OverrideError as err:
        shown = overrides if seed is None else {**overrides, "seed": seed}
        raise SweepError(f"{source} with {shown}: {err}") from None


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of `spec`, in order (check `spec_size` first: this builds them all)."""
    return list(iter_cells(spec))


def spec_size(spec: SweepSpec) -> int:
    """Number of cells `spec` expands to (without building them)."""
    combos = 1
    for values in spec.grid.values():
        combos *= len(values)
    bases = len(spec.experiments)
    if spec.languages is not None:
        files = language_files(spec.languages)
        automata = sum(1 for f in files if f.suffix != ".toml")
        bases = bases * (automata or 1) + len(files) - automata
    return bases * max(1, len(spec.cases)) * combos * len(spec.seeds)


def sweep_hash(cells: list[Cell]) -> str:
    """sha256 over the cells' config hashes in order: the sweep's identity."""
    return hashlib.sha256(json.dumps([c.config_hash for c in cells]).encode()).hexdigest()


def describe_overrides(overrides: dict[str, Any], fixed: dict[str, Any] | None = None) -> str:
    """'model.arch=lstm seed=1' (leaving out the overrides every cell shares, `fixed`)."""
    fixed = fixed or {}
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in overrides.items()
        if k not in fixed or fixed[k] != v
    )


# ---------------------------------------------------------------------------- language files

SYMBOL_TABLE_SUFFIXES = (".syms", ".isyms")


def language_files(pattern: str) -> list[Path]:
    """The files a `languages` glob matches, sorted (SweepError naming the glob if none)."""
    matched = (Path(p) for p in glob.glob(os.path.expanduser(pattern)))
    files = [f for f in matched if f.suffix not in SYMBOL_TABLE_SUFFIXES and f.is_file()]
    files.sort(key=lambda f: f.parts)  # Path order, without Path's slow comparisons
    if not files:
        raise SweepError(
            f"languages: no file matches {pattern!r} (a glob of AT&T files or experiment "
            "TOMLs, e.g. 'languages/*.att'; relative to the current folder)"
        )
    return files


def symbol_table(automaton: Path, symbols: str | None) -> Path | None:
    """The symbol table of an AT&T file: `symbols` if given, else `<stem>.syms` (or .isyms)
    beside it, else None (the alphabet then comes from the arc labels)."""
    if symbols is not None:
        if not Path(symbols).is_file():
            raise SweepError(f"symbols: no symbol table file {symbols!r}")
        return Path(symbols)
    for suffix in SYMBOL_TABLE_SUFFIXES:
        beside = automaton.with_suffix(suffix)
        if beside.is_file():
            return beside
    return None


def with_language(
    base: ExperimentConfig, automaton: Path, symbols: Path | None
) -> ExperimentConfig:
    """`base` with its language replaced by an AT&T file, named after the file's stem."""
    data = base.data.model_dump()
    for source in ("regex", "dfa", "att", "random_dfa", "alphabet"):
        data.pop(source, None)  # the symbol table (or the arc labels) is the alphabet
    data["att"] = {"path": str(automaton), "isymbols": str(symbols) if symbols else None}
    # model and train stay the validated objects: every file's cells share them
    doc = {**fields_with_sections_kept(base, exclude={"data"}), "data": data}
    doc["name"] = automaton.stem
    try:
        return ExperimentConfig.model_validate(doc)
    except ValidationError as err:
        raise SweepError(f"{automaton}: {err.errors()[0]['msg']}") from None


def base_experiments(spec: SweepSpec) -> list[tuple[str, ExperimentConfig]]:
    """(source, config) of each experiment a spec names, before cases, grid and seeds.

    With `languages`, a glob of AT&T files makes one experiment per (experiment, file): the
    experiment's corpus, model and training on the file's language (source `EXP@FILE`); a
    glob of TOMLs adds each file as an experiment. Either way a cell is named after its file.
    """
    return list(iter_base_experiments(spec))


def iter_base_experiments(spec: SweepSpec) -> Iterator[tuple[str, ExperimentConfig]]:
    """`base_experiments`, one at a time (a language file's config is made when reached)."""
    bases = [(source, load_experiment(source)) for source in spec.experiments]
    if spec.languages is None:
        yield from bases
        return
    files = language_files(spec.languages)
    automata = [f for f in files if f.suffix != ".toml"]
    if automata and not bases:
        raise SweepError(
            "languages: AT&T files need an experiment to take the corpus, model and training "
            "from; give `experiments` (e.g. regex_a) too"
        )
    if automata:
        shared = symbol_table(automata[0], spec.symbols) if spec.symbols is not None else None
        tables = {f: shared or symbol_table(f, None) for f in automata}
        for source, base in bases:
            for f in automata:
                yield f"{source}@{f}", with_language(base, f, tables[f])
    for f in files:
        if f.suffix == ".toml":
            yield str(f), load_experiment(str(f))
