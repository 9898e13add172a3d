"""Looking at runs: determinism audits, reports over seeds, plots."""
