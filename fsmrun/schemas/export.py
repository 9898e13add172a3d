"""Generate `json_schemas/<name>.schema.json` from the Pydantic models, or check them for drift.

python -m fsmrun.schemas.export json_schemas           # (re)write the files
python -m fsmrun.schemas.export json_schemas --check   # exit 1 if they differ from the models
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from pydantic import BaseModel

from fsmrun.base.io import atomic_write_text
from fsmrun.schemas.analysis import AnalysisReport
from fsmrun.schemas.cli import AuditReport, EvalReport
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import (
    CheckpointMeta,
    EnvInfo,
    HistoryRecord,
    Metrics,
    RunLabels,
    RunRecord,
)
from fsmrun.schemas.run_row import RunRow
from fsmrun.schemas.sweep import Report, SweepRecord, SweepSpec

# Every model whose JSON fsmrun writes or prints. Append new ones here (one file each).
MODELS: list[type[BaseModel]] = [
    ExperimentConfig,
    RunRecord,
    RunLabels,
    EnvInfo,
    Metrics,
    HistoryRecord,
    CheckpointMeta,
    RunRow,
    EvalReport,
    AuditReport,
    SweepSpec,
    SweepRecord,
    Report,
    AnalysisReport,
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SUFFIX = ".schema.json"


def schema_name(model: type[BaseModel]) -> str:
    """File name of a model's schema: 'RunRecord' -> 'run_record.schema.json'."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower() + SUFFIX


def render_schema(model: type[BaseModel]) -> str:
    """The JSON Schema text of `model`: sorted keys, indent 2, trailing newline."""
    schema = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all(models: list[type[BaseModel]] | None = None) -> dict[str, str]:
    """File name -> schema text for every model of MODELS (or `models`)."""
    rendered = {schema_name(m): render_schema(m) for m in models or MODELS}
    if len(rendered) != len(models or MODELS):
        raise ValueError("two models map to the same schema file name")
    return rendered


def check_schemas(folder: str | Path) -> list[str]:
    """Problems of `folder` against the models: missing, stale or extra files (empty: in sync)."""
    folder = Path(folder)
    expected = render_all()
    problems = []
    for name, text in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the model")
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path.name not in expected:
            problems.append(f"{path}: no model in MODELS produces it")
    return problems


def write_schemas(folder: str | Path) -> list[Path]:
    """Write every schema into `folder` (files no model produces are removed); paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = render_all()
    written = []
    for name, text in expected.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            written.append(path)
    for path in folder.glob(f"*{SUFFIX}"):
        if path.name not in expected:
            path.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fsmrun.schemas.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folder", type=Path, help="output folder, e.g. json_schemas")
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 on any")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_schemas(args.folder)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python -m fsmrun.schemas.export json_schemas", file=sys.stderr)
        return 1 if problems else 0
    written = write_schemas(args.folder)
    print(f"{len(written)} schema file(s) updated in {args.folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
