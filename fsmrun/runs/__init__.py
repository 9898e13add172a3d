"""Run folders on disk: the one owner of a run's files, its writer lock, the results layout
and the SQLite index (no torch)."""
