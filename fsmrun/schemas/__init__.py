"""Pydantic models for every configuration and every JSON file fsmrun writes."""

from fsmrun.schemas.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig

__all__ = ["DataConfig", "ExperimentConfig", "ModelConfig", "TrainConfig"]
