"""Run logging: append-only `logs/history.jsonl` and the rich status display on stderr.

No remote trackers: everything lands in the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from fsmrun.core.io import atomic_write_text
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
        self._file.write(record.model_dump_json(exclude_none=True) + "\n")
        self._file.flush()
        self._count += 1

    def sync(self) -> None:
        """Make written lines durable (called before a checkpoint records `history_len`)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def truncate(self, n_lines: int) -> None:
        """Keep the first `n_lines` (used on resume to drop lines past the checkpoint)."""
        lines = read_history_lines(self.path)[:n_lines]
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


class ConsoleReporter:
    """A progress bar per epoch (loss and speed) and a summary line per epoch, on stderr."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def info(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        if not self.enabled or not self.console.is_terminal:
            return  # a bar in a log file is noise: epoch lines only
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, completed=done, status="")

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def show_loss(self, loss: float, steps_per_s: float | None) -> None:
        if self._progress is not None and self._task is not None:
            speed = f"  {steps_per_s:.0f} steps/s" if steps_per_s else ""
            self._progress.update(self._task, status=f"loss {loss:.4f}{speed}")

    def end_epoch(self, summary: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
        self.info(summary)
