"""Content hashes of JSON-able values and of experiment configs (pure: json + hashlib, no torch),
so light commands (`sweep status`, `report`) can name runs by their config hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

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


def unhashed_fields(tree: Mapping[str, Any] = UNHASHED, prefix: str = "") -> list[str]:
    """The dotted config keys config_hash leaves out ('name', 'train.log_every', ...)."""
    keys = []
    for key, inner in tree.items():
        if inner is True:
            keys.append(prefix + key)
        else:
            keys += unhashed_fields(inner, f"{prefix}{key}.")
    return keys


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


SEED_MARK = "\x00seed\x00"  # where the seed goes in a config's text (canonical JSON has no NUL)


class ConfigHasher:
    """`config_hash` of many configs that share section objects (a sweep's cells, made by
    `overrides.ConfigVariants`): each section's canonical JSON is made once (found by
    identity) and a config's text joined from its sections' texts. Canonical JSON of an
    object is its members' `"key":value` texts joined by commas in key order, so the bytes,
    and the hash, are those of `config_hash`."""

    def __init__(self) -> None:
        self._texts: dict[tuple[int, str], tuple[BaseModel, str]] = {}

    def __call__(self, exp: ExperimentConfig) -> str:
        return self.seeded(exp, [exp.seed])[0]

    def seeded(self, exp: ExperimentConfig, seeds: Iterable[int]) -> list[str]:
        """The hash of `exp` with each of `seeds` as its seed, the rest of the text made once."""
        sections = {
            name: value
            for name in type(exp).model_fields
            if UNHASHED.get(name) is not True and isinstance(value := getattr(exp, name), BaseModel)
        }
        doc = _drop(exp.model_dump(mode="json", exclude=set(sections) | {"seed"}), UNHASHED)
        members = {key: canonical_json(value) for key, value in doc.items()}
        for name, section in sections.items():
            members[name] = self._section_text(name, section)
        members["seed"] = SEED_MARK
        text = ",".join(f"{canonical_json(key)}:{members[key]}" for key in sorted(members))
        before, after = ("{" + text + "}").split(SEED_MARK)
        head = hashlib.sha256(before.encode("utf-8"))
        hashes = []
        for seed in seeds:
            whole = head.copy()
            whole.update(f"{canonical_json(seed)}{after}".encode())
            hashes.append(whole.hexdigest())
        return hashes

    def _section_text(self, name: str, section: BaseModel) -> str:
        known = self._texts.get((id(section), name))
        if known is not None and known[0] is section:  # `is`: an id is unique only while alive
            return known[1]
        rule = UNHASHED.get(name)
        doc = section.model_dump(mode="json")
        text = canonical_json(_drop(doc, rule) if isinstance(rule, Mapping) else doc)
        self._texts[(id(section), name)] = (section, text)
        return text
