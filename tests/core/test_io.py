"""Atomic writes: whole files or the old ones, no temporary files left, `.prev` names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from fsmrun.core import io
from fsmrun.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text, prev_path


class _Doc(BaseModel):
    a: int
    b: str


def test_write_creates_parent_folders_and_replaces_the_file(tmp_path):
    path = tmp_path / "x" / "y" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]


def test_json_of_a_model_and_of_a_plain_value(tmp_path):
    atomic_write_json(tmp_path / "m.json", _Doc(a=1, b="x"))
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1,\n  "b": "x"\n}\n'
    atomic_write_json(tmp_path / "v.json", {"z": 1, "a": [1, 2]})
    text = (tmp_path / "v.json").read_text()
    assert text.endswith("\n") and list(json.loads(text)) == ["a", "z"]  # keys sorted


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_prev_path_keeps_the_suffix():
    assert prev_path(Path("c/last.pt")) == Path("c/last.prev.pt")
    assert prev_path("best.pt").name == "best.prev.pt"
