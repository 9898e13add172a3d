"""What a plotting call takes and hands back: formats, files written, figures skipped and why.

No matplotlib here, so the command line can import these names cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("png", "svg", "pdf")
DEFAULT_GROUP_BY = ("experiment", "arch", "pos_encoding")


class Skip(Exception):
    """Raised by a figure function when its data is missing; the figure is left out."""


@dataclass(frozen=True)
class Skipped:
    figure: str
    reason: str

    def notice(self) -> str:
        """One line for stderr, e.g. 'skipped attention: no captures (set ...)'."""
        return f"skipped {self.figure}: {self.reason}"


@dataclass
class PlotOutcome:
    """Files written (in drawing order) and figures skipped."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
