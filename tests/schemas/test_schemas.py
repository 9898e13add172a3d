"""The JSON Schemas in json_schemas/: in sync with the models, well formed, true to instances."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsmrun.schemas.config import DataConfig, ExperimentConfig
from fsmrun.schemas.export import (
    JSON_SCHEMA_DIALECT,
    MODELS,
    check_schemas,
    main,
    render_all,
    schema_name,
)
from fsmrun.schemas.records import HistoryRecord
from fsmrun.schemas.run_row import RunRow

SCHEMAS = Path(__file__).resolve().parents[2] / "json_schemas"
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def conforms(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    """A small JSON Schema check covering the keywords pydantic emits for our models."""
    if "$ref" in schema:
        return conforms(value, defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    if "anyOf" in schema:
        return any(conforms(value, option, defs) for option in schema["anyOf"])
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "type" in schema:
        expected = _TYPES[schema["type"]]
        if isinstance(value, bool) and schema["type"] in ("integer", "number"):
            return False
        if not isinstance(value, expected):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if any(key not in value for key in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and any(k not in properties for k in value):
            return False
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            if not conforms(item, sub, defs):
                return False
    if isinstance(value, list) and "items" in schema:
        return all(conforms(item, schema["items"], defs) for item in value)
    return True


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_committed_schemas_match_the_models():
    problems = check_schemas(SCHEMAS)
    assert problems == [], (
        "\n".join(problems) + "\nrun: python -m fsmrun.schemas.export json_schemas"
    )


def test_schema_files_are_named_after_their_models():
    assert schema_name(RunRow) == "run_row.schema.json"
    assert schema_name(ExperimentConfig) == "experiment_config.schema.json"
    assert sorted(render_all()) == sorted(p.name for p in SCHEMAS.glob("*.schema.json"))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_schema_is_well_formed(model):
    text = (SCHEMAS / schema_name(model)).read_text(encoding="utf-8")
    schema = json.loads(text)
    assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert (schema["title"], schema["type"]) == (model.__name__, "object")
    assert schema["additionalProperties"] is False  # typos in files are errors
    assert set(schema["properties"]) == set(model.model_fields)
    assert set(schema.get("required", [])) <= set(schema["properties"])
    defs = schema.get("$defs", {})
    for ref in refs(schema):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs, ref
    for name, definition in defs.items():
        assert definition["title"] == name


def test_schemas_accept_real_instances_and_reject_broken_ones():
    config = ExperimentConfig(name="regex_a", data=DataConfig(regex="(ab)*", alphabet="ab"))
    history = HistoryRecord(kind="eval", step=5, epoch=0, time=1.5, metrics={"val.loss": 0.2})
    row = RunRow(
        run_id="regex_a-a1b2c3d4e5f6-v1",
        experiment="regex_a",
        config_hash="a1b2c3d4e5f6" + "0" * 52,
        version=1,
        folder="regex_a/a1b2c3d4e5f6/v1",
        status="completed",
        created=1.0,
        updated=2.0,
        hostname="h",
        pid=None,
        heartbeat=2.0,
        device="cpu",
        amp=False,
        deterministic=True,
        steps=10,
        epochs=1,
        times_resumed=0,
        stop_reason="patience",
        best_val_metric="val.string_acc",
        best_val_value=0.9,
        test_string_acc=0.8,
        test_ood_string_acc=None,
        wall_time_s=1.25,
        audit_verified=None,
    )
    for instance in (config, history, row):
        schema = json.loads((SCHEMAS / schema_name(type(instance))).read_text())
        doc = instance.model_dump(mode="json")
        assert conforms(doc, schema, schema.get("$defs", {}))
        assert not conforms({**doc, "typo": 1}, schema, schema.get("$defs", {}))
    row_schema = json.loads((SCHEMAS / "run_row.schema.json").read_text())
    bad_status = {**row.model_dump(mode="json"), "status": "done"}
    assert not conforms(bad_status, row_schema, row_schema.get("$defs", {}))


def test_check_mode_reports_drift_and_write_mode_repairs_it(tmp_path):
    assert main([str(tmp_path), "--check"]) == 1  # nothing there yet
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "run_row.schema.json").write_text("{}\n")
    (tmp_path / "gone_model.schema.json").write_text("{}\n")
    assert check_schemas(tmp_path) == [
        f"{tmp_path / 'run_row.schema.json'}: differs from the model",
        f"{tmp_path / 'gone_model.schema.json'}: no model in MODELS produces it",
    ]
    assert main([str(tmp_path)]) == 0
    assert check_schemas(tmp_path) == []
    assert not (tmp_path / "gone_model.schema.json").exists()


def test_module_entry_point_exits_nonzero_on_drift(tmp_path):
    argv = [sys.executable, "-m", "fsmrun.schemas.export", str(tmp_path), "--check"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 1
    assert "experiment_config.schema.json: missing" in result.stderr
