"""fsmrun: train small sequence models on regular languages, reproducibly."""

__version__ = "0.1.0"
