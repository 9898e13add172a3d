"""`import fsmrun`: the notebook names, each from the module that defines it, loaded lazily
(no torch until a name that needs it is used)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fsmrun

LAZY = """
import sys
import fsmrun
assert "torch" not in sys.modules and "fsmrun.lang" not in sys.modules, "a stage was loaded"
dfa = fsmrun.compile_regex("(ab)*", "ab")
exp = fsmrun.load_experiment("regex_a")
print(dfa.num_states, exp.name, "torch" in sys.modules)
fsmrun.train_one_experiment
print("torch" in sys.modules)
"""


def test_import_fsmrun_loads_torch_only_when_a_name_needs_it():
    proc = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # (ab)*: start/accepting, after a, dead: 3 states; no torch for a language or a config
    assert proc.stdout.split() == ["3", "regex_a", "False", "True"]


@pytest.mark.parametrize("name", sorted(n for n in fsmrun.__all__ if n != "__version__"))
def test_public_name_comes_from_its_defining_module(name):
    value = getattr(fsmrun, name)
    assert value.__module__ == fsmrun._PUBLIC[name]
    assert value.__name__ == name


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        fsmrun.no_such_name  # noqa: B018


def test_all_lists_exactly_the_public_names():
    assert sorted(fsmrun.__all__) == sorted(["__version__", *fsmrun._PUBLIC])


def test_version_matches_the_package_metadata():
    from importlib.metadata import version

    assert fsmrun.__version__ == version("fsmrun")
