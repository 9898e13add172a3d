"""Light commands (help, ls, show, experiments, fsm, report, diff, sweep status) start without
importing torch or matplotlib (nor numpy, apart from the two that build a DFA); `plot` of a run
without captures draws without importing torch. Each command imports its own module and no
other command's; `fsmrun --help` imports none."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os, sys
PLOT = sys.argv[1] == "plot"
DFA = sys.argv[1] in ("experiments", "fsm")  # a DFA's transition table is a numpy array
sys.argv = ["fsmrun", *sys.argv[1:]]
def end(code):  # a read-only command ends the process when done (cli._common.end_now)
    raise SystemExit(code)
os._exit = end  # here the probe goes on, to look at what was imported
from fsmrun.cli import main
try:
    main()
except SystemExit:
    pass
assert "torch" not in sys.modules, "torch was imported"
assert PLOT or "matplotlib" not in sys.modules, "matplotlib was imported"
assert PLOT or DFA or "numpy" not in sys.modules, "numpy was imported"
print("CLI MODULES", *sorted(m for m in sys.modules if m.startswith("fsmrun.cli.")))
"""

# The modules every command loads: the app, its table and the shared pieces.
SHARED = {"fsmrun.cli._app", "fsmrun.cli._common", "fsmrun.cli._options", "fsmrun.cli._render"}


def cli_modules(stdout: str) -> set[str]:
    """The fsmrun.cli modules a PROBE run had imported (its last line)."""
    line = stdout.splitlines()[-1]
    assert line.startswith("CLI MODULES")
    return set(line.split()[2:])


@pytest.fixture(scope="module")
def swept(trained, tmp_path_factory):
    """The trained runs plus the record of a sweep over them (written without torch)."""
    root = tmp_path_factory.mktemp("swept") / "results"
    shutil.copytree(trained.root, root)
    code = (
        "import sys; from pathlib import Path; from fsmrun.sweeps import coordinator as s\n"
        "from fsmrun.sweeps.spec import expand, inline_spec\n"
        "spec = inline_spec([sys.argv[2]], {}, [0, 1], {}, 'tiny')\n"
        "s.write_record(Path(sys.argv[1]), s.sweep_status(Path(sys.argv[1]), spec, "
        "expand(spec), None))\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code, str(root), str(trained.toml)], check=True)
    return dataclasses.replace(trained, root=root, folders=[])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["ls"],
        ["show", "RUN"],
        ["experiments"],
        ["fsm", "(a|b)*ab", "--alphabet", "ab"],
        ["report"],
        ["diff", "RUN", "RUN2"],
        ["sweep", "status", "tiny"],
        ["sweep", "status", "tomita"],
    ],
    ids=["help", "ls", "show", "experiments", "fsm", "report", "diff", "sweep-status", "spec"],
)
def test_light_command_does_not_import_torch(argv, swept):
    argv = [a.replace("RUN2", swept.run_ids[1]).replace("RUN", swept.run_ids[0]) for a in argv]
    if argv[0] in ("ls", "show", "report", "diff", "sweep"):
        argv += ["--results-dir", str(swept.root)]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:-1]  # the command did its work
    own = {
        "ls": {"fsmrun.cli.ls"},
        "show": {"fsmrun.cli.runs"},
        "diff": {"fsmrun.cli.runs"},
        "experiments": {"fsmrun.cli.languages"},
        "fsm": {"fsmrun.cli.languages"},
        "report": {"fsmrun.cli.report"},
        "sweep": {"fsmrun.cli.sweep", "fsmrun.cli.languages"},  # its --list shows the suites
        "--help": set(),
    }[argv[0]]
    assert cli_modules(proc.stdout) - SHARED == own


def test_help_lists_every_command_importing_none_of_them():
    from fsmrun.cli._app import COMMANDS

    code = PROBE + (
        "loaded = [m for m in ('pydantic', 'numpy', 'fsmrun.schemas', 'fsmrun.runs', "
        "'fsmrun.lang') if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert cli_modules(proc.stdout) == {"fsmrun.cli._app", "fsmrun.cli._common"}
    listed = [line.split()[0] for line in proc.stdout.split("Commands:\n")[1].splitlines()[:-1]]
    assert listed == list(COMMANDS)


def test_plot_of_a_run_without_captures_does_not_import_torch(trained_copy):
    folder = trained_copy.folders[0]
    assert not (folder / "captures").exists()  # the CLI fixture's runs save none
    argv = ["plot", trained_copy.run_ids[0], "--results-dir", str(trained_copy.root)]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout.splitlines()[:-1]
    names = [Path(p).name for p in written if Path(p).stem != "automaton"]  # if Graphviz is here
    assert names == ["learning_curves.png", "accuracy_by_length.png"]
    assert all(Path(p).parent == (folder / "plots").resolve() for p in written)


@pytest.mark.parametrize(("given", "kept"), [(None, "__all__"), ("", ""), ("logfire", "logfire")])
def test_pydantic_plugins_are_off_unless_asked_for(given, kept):
    """Looking for pydantic plugins reads every installed package's metadata (35 ms of each
    start-up): the command line turns them off, unless PYDANTIC_DISABLE_PLUGINS is set."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    code = (
        "import os, sys\nsys.argv = ['fsmrun', '--help']\nfrom fsmrun.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('SETTING=%r' % os.environ.get('PYDANTIC_DISABLE_PLUGINS'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert f"SETTING={kept!r}" in proc.stderr, proc.stderr
