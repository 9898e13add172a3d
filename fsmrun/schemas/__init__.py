"""Pydantic models for every configuration and every JSON file fsmrun writes.

Import a model from the module that defines it (`fsmrun.schemas.config`, `.records`, ...); the
names below also resolve here, on first use, so that importing one schema module does not
define the models of the others (class creation is a measurable part of a light command's
start-up)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Name -> the module that defines it.
_DEFINED_IN = {
    "DataConfig": "fsmrun.schemas.config",
    "ExperimentConfig": "fsmrun.schemas.config",
    "ModelConfig": "fsmrun.schemas.config",
    "TrainConfig": "fsmrun.schemas.config",
    "BinMetrics": "fsmrun.schemas.records",
    "CheckpointEval": "fsmrun.schemas.records",
    "CheckpointMeta": "fsmrun.schemas.records",
    "EarlyStopState": "fsmrun.schemas.records",
    "EnvInfo": "fsmrun.schemas.records",
    "HistoryRecord": "fsmrun.schemas.records",
    "Metrics": "fsmrun.schemas.records",
    "RunHashes": "fsmrun.schemas.records",
    "RunRecord": "fsmrun.schemas.records",
    "SplitMetrics": "fsmrun.schemas.records",
}

__all__ = [
    "BinMetrics",
    "CheckpointEval",
    "CheckpointMeta",
    "DataConfig",
    "EarlyStopState",
    "EnvInfo",
    "ExperimentConfig",
    "HistoryRecord",
    "Metrics",
    "ModelConfig",
    "RunHashes",
    "RunRecord",
    "SplitMetrics",
    "TrainConfig",
]


def __getattr__(name: str) -> Any:
    """Import the defining module of a re-exported model on first use (PEP 562)."""
    if name not in _DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_DEFINED_IN[name]), name)


if TYPE_CHECKING:  # for type checkers and editors; never executed
    from fsmrun.schemas.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from fsmrun.schemas.records import (
        BinMetrics,
        CheckpointEval,
        CheckpointMeta,
        EarlyStopState,
        EnvInfo,
        HistoryRecord,
        Metrics,
        RunHashes,
        RunRecord,
        SplitMetrics,
    )
