"""Shared fixtures of the CLI tests: a tiny experiment TOML and a results folder with runs.

The tiny experiment (64 training strings, d_model 16, 1 layer, 2 epochs of 4 steps) trains in
a few seconds on CPU; the session-scoped results folder is trained once and copied by tests
that change it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fsmrun.cli import app

TINY_TOML = """\
name = "tiny"
description = "Strings over {a,b} ending in ab; a test-sized corpus and model."
seed = 0

[data]
regex = "(a|b)*ab"
alphabet = "ab"
min_len = 1
max_len = 8
ood_min_len = 9
ood_max_len = 12
n_train = 64
n_val = 32
n_test = 32
n_test_ood = 32

[model]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32

[train]
epochs = 2
batch_size = 16
warmup_steps = 2
log_every = 2
"""
STEPS_PER_EPOCH = 4  # 64 strings / batch 16
TOTAL_STEPS = 8


@dataclass(frozen=True)
class Trained:
    """A results folder holding two completed tiny runs (seeds 0 and 1)."""

    root: Path
    toml: Path
    run_ids: list[str]  # in training order: seed 0, seed 1
    folders: list[Path]


def invoke(*args: str | Path) -> Result:
    """Run the real CLI in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def cli():
    """`cli("ls", "--json")` runs the real CLI in-process and returns the Result."""
    return invoke


@pytest.fixture(scope="session")
def tiny_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def train_tiny(toml: Path, root: Path, *extra: str) -> tuple[str, Path]:
    result = invoke("train", toml, "--results-dir", root, "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    return lines["run"].strip(), Path(lines["folder"].strip())


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_toml: Path) -> Trained:
    root = tmp_path_factory.mktemp("results")
    first = train_tiny(tiny_toml, root)
    second = train_tiny(tiny_toml, root, "--seed", "1")
    return Trained(root, tiny_toml, [first[0], second[0]], [first[1], second[1]])


@pytest.fixture
def trained_copy(trained: Trained, tmp_path: Path) -> Trained:
    """A private copy of the trained results folder (for tests that change it)."""
    root = tmp_path / "results"
    shutil.copytree(trained.root, root)
    folders = [root / f.relative_to(trained.root) for f in trained.folders]
    return Trained(root, trained.toml, trained.run_ids, folders)
