"""Helpers shared by the test packages (imported as `from conftest import ...`; pytest's
`pythonpath` puts tests/ on the path): run records and run folders written without training,
claims of empty run folders, file digests and tensor equality."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
import torch

from fsmrun.base.io import atomic_write_json
from fsmrun.runs.layout import claim_run_folder, run_id_for, version_of
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.records import RunRecord

HASH_A = "a1b2c3d4e5f6" + "0" * 52
HASH_B = "ffee00112233" + "1" * 52


def make_record(
    experiment: str = "regex_a", config_hash: str = HASH_A, version: int = 1, **fields
) -> RunRecord:
    """A completed run's record (10 steps, 1 epoch) unless `fields` say otherwise."""
    values = dict(
        run_id=run_id_for(experiment, config_hash, version),
        experiment=experiment,
        config_hash=config_hash,
        version=version,
        status="completed",
        command=["fsmrun", "train", experiment],
        device="cpu",
        amp=False,
        deterministic=True,
        created=1000.0 + version,
        updated=2000.0,
        heartbeat=2000.0,
        pid=None,
        hostname=socket.gethostname(),
        steps=10,
        epochs=1,
    )
    return RunRecord(**{**values, **fields})


def write_record(folder: str | os.PathLike[str], record: RunRecord) -> None:
    """run.json exactly as given (tests fabricate states a writer never leaves)."""
    atomic_write_json(RunFolder(folder).run_json, record)


def claim_empty_run_folder(
    root: str | os.PathLike[str], experiment: str, config_hash: str, *, overwrite: bool = False
) -> tuple[Path, int]:
    """A claimed run folder holding no run files yet (lock released); (folder, version)."""
    folder = claim_run_folder(root, experiment, config_hash, overwrite=overwrite)
    folder.release_lock()
    return folder.path, version_of(folder.path)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same keys, bitwise equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def _no_command_may_end_the_test_process():
    """A read-only command ends its process when done, inside `fsmrun.cli.main` only
    (cli._common.end_now): were that ever armed in-process, a test would end pytest with
    status 0 and the tests after it unrun."""
    from fsmrun.cli._common import in_console_script

    assert not in_console_script()
    yield
    assert not in_console_script()
