"""How far a sweep invocation has come: cells done of the total to run, failures, and the time
left estimated from the cells finished so far (what `fsmrun sweep` shows as it runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class SweepProgress:
    """Counts of this invocation's cells; `finished` once per cell result."""

    total: int
    done: int = 0
    failed: int = 0
    interrupted: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def finished(self, status: str) -> None:
        self.done += 1
        if status == "failed":
            self.failed += 1
        elif status == "interrupted":
            self.interrupted += 1

    def seconds_left(self, now: float | None = None) -> float | None:
        """The mean time per finished cell times the cells left (None before the first)."""
        if self.done == 0:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started_at
        return elapsed / self.done * max(0, self.total - self.done)

    def summary(self, now: float | None = None) -> str:
        """'3/8 done, 1 failed, ~12s left' (the parts that apply)."""
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted")
        left = self.seconds_left(now)
        if left is not None and self.done < self.total:
            parts.append(f"~{format_seconds(left)} left")
        return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    """42s, 3m05s, 2h10m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
