"""Light commands (help, ls, show, experiments, fsm) start without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = ["fsmrun", *sys.argv[1:]]
from fsmrun.cli import main
try:
    main()
except SystemExit:
    pass
assert "torch" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["ls"],
        ["show", "RUN"],
        ["experiments"],
        ["fsm", "(a|b)*ab", "--alphabet", "ab"],
    ],
    ids=["help", "ls", "show", "experiments", "fsm"],
)
def test_light_command_does_not_import_torch(argv, trained):
    argv = [a.replace("RUN", trained.run_ids[0]) for a in argv]
    if argv[0] in ("ls", "show"):
        argv += ["--results-dir", str(trained.root)]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout  # the command did its work
