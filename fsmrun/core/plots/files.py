"""Where the plots find a run's files: the one place that knows the run-folder layout.

Everything else in `fsmrun.core.plots` reads a run through `RunFiles`, so a change of layout
touches this module only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsmrun.core.fsm import DFA
from fsmrun.core.logging import read_history
from fsmrun.core.registry import read_config, read_metrics, read_run_record
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import HistoryRecord, Metrics, RunRecord

_CAPTURE_RE = re.compile(r"^epoch_([0-9]+)\.pt$")


@dataclass(frozen=True)
class Capture:
    """One capture file: a fixed batch's strings, attention maps and hidden states.

    `attentions` is float [L, B, H, T, T] (None for recurrent models), `hidden_states`
    float [L + 1, B, T, D] (the embeddings first), `lengths` the string lengths [B].
    """

    epoch: int
    step: int
    strings: list[str]
    lengths: list[int]
    attentions: Any | None  # numpy arrays; typed loosely so this module needs no torch
    hidden_states: Any


class RunFiles:
    """Read-only view of one run folder for drawing; `plots_dir()` is where figures go."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def record(self) -> RunRecord:
        return read_run_record(self.folder)

    def config(self) -> ExperimentConfig | None:
        return read_config(self.folder)

    def metrics(self) -> Metrics | None:
        return read_metrics(self.folder)

    def history(self) -> list[HistoryRecord]:
        return read_history(self.folder / "logs" / "history.jsonl")

    def dfa(self) -> DFA | None:
        path = self.folder / "fsm.json"
        return DFA.from_json(path.read_text(encoding="utf-8")) if path.is_file() else None

    def dot_path(self) -> Path | None:
        path = self.folder / "fsm.dot"
        return path if path.is_file() else None

    def capture_epochs(self) -> list[int]:
        """Epochs with a capture file, ascending."""
        folder = self.folder / "captures"
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _CAPTURE_RE.match(p.name)))

    def capture(self, epoch: int) -> Capture:
        """Load one capture file (imports torch; weights_only, so no code runs from the file)."""
        import torch  # only here: every other figure draws without torch

        path = self.folder / "captures" / f"epoch_{epoch:04d}.pt"
        doc = torch.load(path, map_location="cpu", weights_only=True)
        attentions = doc.get("attentions")
        return Capture(
            epoch=int(doc["epoch"]),
            step=int(doc["step"]),
            strings=list(doc["strings"]),
            lengths=[int(n) for n in doc["lengths"].tolist()],
            attentions=None if attentions is None else attentions.float().numpy(),
            hidden_states=doc["hidden_states"].float().numpy(),
        )

    def plots_dir(self) -> Path:
        return self.folder / "plots"
