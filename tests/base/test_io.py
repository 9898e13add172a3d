"""Atomic writes: whole file or old file, the umask's permissions, failures that name the file."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from fsmrun.base import io
from fsmrun.base.io import (
    WriteError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    prev_path,
    remove_stale_temp_files,
)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_file_holds_the_data_and_no_temp_file_remains(tmp_path):
    target = tmp_path / "sub" / "run.json"
    atomic_write_text(target, "old\n")
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_permissions_a_plain_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with open(tmp_path / "plain.bin", "wb") as f:
        f.write(b"x")
    assert mode(tmp_path / "a.bin") == expected == mode(tmp_path / "plain.bin")


def test_replacing_a_file_keeps_the_umask_permissions(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "history.jsonl"
    with open(target, "a") as f:  # how the history file is first created
        f.write("{}\n")
    atomic_write_text(target, "{}\n{}\n")  # how it is rewritten on resume
    assert mode(target) == 0o644


def _fail_with(err_no: int):
    def fail(*args, **kwargs):
        raise OSError(err_no, os.strerror(err_no))

    return fail


@pytest.mark.parametrize(
    "patched, err_no, reason",
    [
        ("write", errno.ENOSPC, "No space left on device"),
        ("fsync", errno.ENOSPC, "No space left on device"),
        ("write", errno.EFBIG, "File too large"),
        ("open", errno.EACCES, "Permission denied"),
        ("replace", errno.EACCES, "Permission denied"),
    ],
)
def test_a_failed_write_names_the_file_and_keeps_the_old_content(
    tmp_path, monkeypatch, patched, err_no, reason
):
    target = tmp_path / "run.json"
    atomic_write_text(target, "old\n")
    monkeypatch.setattr(io.os, patched, _fail_with(err_no))
    with pytest.raises(WriteError) as err:
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert isinstance(err.value, OSError) and err.value.errno == err_no
    assert err.value.filename == str(target)
    assert str(err.value) == f"cannot write {target}: {reason}"
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_an_unwritable_folder_names_the_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError) as err:
            atomic_write_text(folder / "run.json", "x")
    finally:
        folder.chmod(0o755)
    assert err.value.errno == errno.EACCES
    assert str(err.value) == f"cannot write {folder / 'run.json'}: Permission denied"


def test_a_file_size_limit_names_the_file_and_leaves_no_temp_file(tmp_path):
    script = textwrap.dedent(
        f"""
        import resource
        from fsmrun.base.io import atomic_write_bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        try:
            atomic_write_bytes({str(tmp_path / "last.pt")!r}, bytes(5000))
        except OSError as err:
            print(err.errno, err)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout == f"{errno.EFBIG} cannot write {tmp_path / 'last.pt'}: File too large\n"
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_found_and_removed_everywhere_in_a_folder(tmp_path):
    keep = ["run.json", ".hidden", "notes.tmp", "checkpoints/last.pt", "checkpoints/.last.pt.new"]
    stale = [
        ".run.json.k2j4_x9a.tmp",  # left by a killed process (old tempfile names)
        "logs/.history.jsonl.0a1b2c3d.tmp",
        "checkpoints/..last.pt.new.abcd1234.tmp",
    ]
    for name in keep + stale:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temp_files(tmp_path)
    assert removed == sorted(tmp_path / name for name in stale)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(keep)


def test_temp_files_of_an_interrupted_write_match_the_stale_pattern(tmp_path, monkeypatch):
    seen: list[str] = []
    real_replace = os.replace

    def record_then_fail(src, dst):
        seen.append(Path(src).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", record_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "run.json", "x")
    monkeypatch.setattr(io.os, "replace", real_replace)
    assert list(tmp_path.iterdir()) == []  # cleaned up on the way out
    (tmp_path / seen[0]).write_text("x")  # as a kill -9 would have left it
    assert remove_stale_temp_files(tmp_path) == [tmp_path / seen[0]]


def test_removing_stale_temp_files_from_a_missing_folder_removes_nothing(tmp_path):
    assert remove_stale_temp_files(tmp_path / "nope") == []


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


def test_read_small_file_reads_every_byte_of_small_and_large_files(tmp_path):
    from fsmrun.base.io import SMALL_READ, read_small_file

    for size in (0, 10, SMALL_READ - 1, SMALL_READ, 3 * SMALL_READ + 7):
        path = tmp_path / f"f{size}"
        data = bytes(i % 251 for i in range(size))
        path.write_bytes(data)
        assert read_small_file(str(path)) == data
    with pytest.raises(FileNotFoundError):
        read_small_file(str(tmp_path / "missing"))
    with pytest.raises(IsADirectoryError):
        read_small_file(str(tmp_path))
