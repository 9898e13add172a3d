"""Light commands (help, ls, show, experiments, fsm) start without importing torch or
matplotlib; `plot` of a run without captures draws without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
PLOT = sys.argv[1] == "plot"
sys.argv = ["fsmrun", *sys.argv[1:]]
from fsmrun.cli import main
try:
    main()
except SystemExit:
    pass
assert "torch" not in sys.modules, "torch was imported"
assert PLOT or "matplotlib" not in sys.modules, "matplotlib was imported"
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


def test_plot_of_a_run_without_captures_does_not_import_torch(trained_copy):
    folder = trained_copy.folders[0]
    assert not (folder / "captures").exists()  # the CLI fixture's runs save none
    argv = ["plot", trained_copy.run_ids[0], "--results-dir", str(trained_copy.root)]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.splitlines()
    names = [Path(p).name for p in written if Path(p).stem != "automaton"]  # if Graphviz is here
    assert names == ["learning_curves.png", "accuracy_by_length.png"]
    assert all(Path(p).parent == (folder / "plots").resolve() for p in written)
