"""Status display on stderr while training: a progress bar per epoch and one line per epoch."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class ProgressDisplay:
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
