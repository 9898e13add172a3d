"""Read-only view of a run folder for drawing: every path and read goes through RunFolder, and
the only place a figure may be written is the folder's `plots/` (a cache derived from the run)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsmrun.base.errors import UserError
from fsmrun.lang.fsm import DFA
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import HistoryRecord, Metrics, RunRecord
from fsmrun.train.history import read_history


@dataclass(frozen=True)
class Capture:
    """One capture file: a fixed batch's strings, attention maps and hidden states.

    `epoch` counts from 1. `attentions` is float [L, B, H, T, T] (None for recurrent models),
    `hidden_states` float [L + 1, B, T, D] (the embeddings first), `lengths` the lengths [B].
    """

    epoch: int
    step: int
    strings: list[str]
    lengths: list[int]
    attentions: Any | None  # numpy arrays; typed loosely so this module needs no torch
    hidden_states: Any


def _short_reason(exc: Exception) -> str:
    """A few words on why torch refused a file, without torch's advice to load it with
    weights_only=False (that would run code from a file nobody vouched for)."""
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} entry"
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        found = re.search(r"GLOBAL (\S+)", detail)
        return f"it holds a {found.group(1)} object" if found else detail[:80]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:100] if lines else type(exc).__name__


class RunFiles:
    """What the figures read of one run (through RunFolder); `plots_dir()` is where they go."""

    def __init__(self, folder: str | Path) -> None:
        self.run = RunFolder(folder)

    @property
    def folder(self) -> Path:
        return self.run.path

    def record(self) -> RunRecord:
        return self.run.read_record()

    def config(self) -> ExperimentConfig | None:
        return self.run.read_config()

    def metrics(self) -> Metrics | None:
        return self.run.read_metrics()

    def history(self) -> list[HistoryRecord]:
        return read_history(self.run.history)

    def dfa(self) -> DFA | None:
        text = self.run.read_fsm_json()
        return None if text is None else DFA.from_json(text)

    def dot_path(self) -> Path | None:
        """fsm.dot, handed to Graphviz as a file; None if the run has none."""
        return self.run.fsm_dot if self.run.fsm_dot.is_file() else None

    def capture_epochs(self) -> list[int]:
        """Epochs (1-based) with a capture file, ascending."""
        return self.run.capture_epochs()

    def capture(self, epoch: int) -> Capture:
        """Load one capture file (imports torch; weights_only, so no code runs from the file)."""
        import torch  # only here: every other figure draws without torch

        path = self.run.capture(epoch)
        try:
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
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
            reason = _short_reason(exc)
            raise UserError(
                f"{path} is not a capture file fsmrun can read safely ({reason}); delete it, "
                f"or train again with train.capture_epochs to write a new one"
            ) from None

    def status_mark(self) -> str:
        """What a figure title adds for a run that did not complete: '' when completed, else
        e.g. ' - FAILED at step 2: non-finite ...' or ' - RUNNING (step 40 so far)'."""
        status = self.run.status()
        if status == "completed":
            return ""
        record = self.record()
        if status == "failed":
            reason = (record.error or "").strip().splitlines()
            why = f": {reason[0][:60]}" if reason else ""
            return f" - FAILED at step {record.steps}{why}"
        if status == "running":
            return f" - RUNNING (step {record.steps} so far)"
        return f" - {status.upper()} at step {record.steps}"

    def plots_dir(self) -> Path:
        return self.run.plots_dir

    def plot_path(self, name: str, fmt: str) -> Path:
        """`plots/<name>.<fmt>`: the one kind of file drawing a run may write."""
        return self.run.plots_dir / f"{name}.{fmt}"
