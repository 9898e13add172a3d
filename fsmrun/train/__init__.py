"""Training: optimiser, step, early stopping, hooks, history, checkpoints, metrics,
evaluation, the session and the loop."""
