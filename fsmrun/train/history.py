"""A run's history: validated HistoryRecords appended one JSON line each, read back with a
torn last line dropped. No remote trackers: everything lands in the run folder."""

from __future__ import annotations

import os
from pathlib import Path

from fsmrun.base.faults import ARMED, fault_point
from fsmrun.base.io import WriteError, atomic_write_text
from fsmrun.schemas.records import HistoryRecord


class HistoryWriter:
    """Appends validated HistoryRecords, one JSON line each, flushed as written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._count = len(read_history_lines(path))
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)

    @property
    def count(self) -> int:
        return self._count

    def append(self, record: HistoryRecord) -> None:
        line = record.model_dump_json(exclude_none=True) + "\n"
        try:
            if "history_mid_line" in ARMED:
                self._file.write(line[: len(line) // 2])
                self._file.flush()
                fault_point("history_mid_line")
                line = line[len(line) // 2 :]
            self._file.write(line)
            self._file.flush()
        except OSError as err:
            raise WriteError(err.errno, err.strerror or str(err), str(self.path)) from err
        self._count += 1

    def sync(self) -> None:
        """Make written lines durable (called before a checkpoint records `history_len`)."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            raise WriteError(err.errno, err.strerror or str(err), str(self.path)) from err

    def truncate(self, n_lines: int) -> None:
        """Keep the first `n_lines` (used on resume to drop lines past the checkpoint)."""
        self.rewrite(read_history_lines(self.path)[:n_lines])

    def rewrite(self, lines: list[str]) -> None:
        """Replace the file by these complete lines, then go on appending."""
        self._file.close()
        atomic_write_text(self.path, "".join(line + "\n" for line in lines))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._count = len(lines)

    def close(self) -> None:
        self._file.close()


def read_history_lines(path: Path) -> list[str]:
    """Complete lines of a history file (a torn last line, from a crash, is dropped)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]  # the part after the last newline is torn


def read_history(path: Path) -> list[HistoryRecord]:
    return [HistoryRecord.model_validate_json(line) for line in read_history_lines(path)]
