"""The small base every stage stands on: errors, atomic io, fault points, hashing, seeding,
the environment record, `--set` overrides and the status console."""
