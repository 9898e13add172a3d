"""Content hashes of JSON-able values and of experiment configs (pure: json + hashlib, no torch),
so light commands (`sweep status`, `report`) can name runs by their config hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fsmrun.schemas.config import ExperimentConfig

# Fields that never change the numbers: left out of config_hash.
UNHASHED: Mapping[str, Any] = {
    "name": True,
    "description": True,
    "train": {
        "save_every": True,
        "log_every": True,
        "capture_epochs": True,
        "capture_batch_size": True,
    },
}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give identical bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _drop(doc: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        rule = spec.get(key)
        if rule is True:
            continue
        out[key] = _drop(value, rule) if isinstance(rule, Mapping) else value
    return out


def config_hash(exp: ExperimentConfig) -> str:
    """sha256 (hex) of everything in the config that changes the numbers."""
    return sha256_text(canonical_json(_drop(exp.model_dump(mode="json"), UNHASHED)))
