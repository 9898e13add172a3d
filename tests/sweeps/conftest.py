"""Shared fixtures of the sweep tests: a tiny experiment (an LSTM over (a|b)*ab, 2 epochs of 2
steps) as a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """\
name = "tiny"
[data]
regex = "(a|b)*ab"
alphabet = "ab"
max_len = 7
ood_min_len = 8
ood_max_len = 9
n_train = 32
n_val = 16
n_test = 16
n_test_ood = 16
[model]
arch = "lstm"
d_model = 8
n_layers = 1
n_heads = 2
d_ff = 16
[train]
epochs = 2
batch_size = 16
warmup_steps = 1
log_every = 1
"""


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    """The path of the tiny experiment's TOML."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return str(path)
