"""The machinery of fsmrun, one concern a module."""
