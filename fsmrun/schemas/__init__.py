"""Pydantic models for every configuration and every JSON file fsmrun writes."""

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
