"""Crash-safe file writes: temporary file in the same folder, fsync, os.replace, fsync folder.

A failed write raises `WriteError` naming the file; `remove_stale_temp_files` clears the
temporary files a killed process leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fsmrun.base.faults import fault_point

# `.<name>.<8 random characters>.tmp`: the hex names written here and the [a-z0-9_] names
# of tempfile.mkstemp used before, so leftovers of older versions are found too.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


class WriteError(OSError):
    """Writing a file failed; `filename` is the file meant, `errno`/`strerror` the OS reason."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (no-op where directories cannot be opened)."""
    fault_point("before_dir_fsync")
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new empty temporary file next to `name`, with the mode a plain open() gives
    (0o666 less the umask: the kernel applies it, so no process-wide umask juggling)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def prev_path(path: str | os.PathLike[str]) -> Path:
    """`<name>.prev<suffix>`: where a replaced file is kept (checkpoints keep their last one)."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one.

    On failure the old file is untouched, no temporary file is left behind and the error is
    a `WriteError` carrying `path` and the OS reason (errno kept).
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path.parent, path.name)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        fault_point("tmp_written")
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: BaseModel | Any) -> None:
    """Write a Pydantic model or plain JSON value, indented, with a trailing newline."""
    if isinstance(obj, BaseModel):
        text = obj.model_dump_json(indent=2)
    else:
        text = json.dumps(obj, indent=2, sort_keys=True)
    atomic_write_text(path, text + "\n")


SMALL_READ = 1 << 16  # a run folder's JSON files are a few kB


def read_small_file(path: str) -> bytes:
    """The bytes of the file at `path`, in as few system calls as the file allows: open, one
    read for a file under SMALL_READ bytes, close (a reindex reads 400,000 such files; the
    buffered open().read() makes nine calls a file). OSError as open() raises it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, SMALL_READ)
        if len(data) < SMALL_READ:
            return data
        parts = [data]
        while chunk := os.read(fd, SMALL_READ):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of writes that never finished anywhere under `folder`.

    Only call it while no process writes there (a run folder under its lock). Returns the
    removed paths, sorted; symbolic links are neither followed nor removed.
    """
    removed = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            candidate = Path(dirpath) / name
            if _TEMP_NAME.fullmatch(name) and not candidate.is_symlink():
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return sorted(removed)
