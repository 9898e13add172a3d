"""Sweeps: specs and suites, the coordinator, executors (in process, local pool, Ray)."""
