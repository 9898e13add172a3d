"""A large sweep's cell states come from one query of the index; they equal those read folder
by folder (done, failed with its error, running gone interrupted, to do)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fsmrun.runs.index import RunIndex
from fsmrun.runs.layout import claim_run_folder
from fsmrun.schemas.records import RunRecord
from fsmrun.schemas.sweep import SweepSpec
from fsmrun.sweeps import coordinator
from fsmrun.sweeps.spec import expand


def record(cell, version: int, status: str, **fields) -> RunRecord:
    name, chash = cell.config.name, cell.config_hash
    values = dict(
        run_id=f"{name}-{chash[:12]}-v{version}", experiment=name, config_hash=chash,
        version=version, status=status, command=["fsmrun"], device="cpu", amp=False,
        deterministic=True, created=1000.0 + version, updated=1000.0, heartbeat=1000.0,
        pid=None, hostname=socket.gethostname(),
    )  # fmt: skip
    return RunRecord(**{**values, **fields})


def add_run(root: Path, cell, status: str, **fields) -> None:
    def files(folder, version):
        folder.write_record(record(cell, version, status, **fields))

    claim_run_folder(root, cell.config.name, cell.config_hash, files).release_lock()


def test_index_cell_states_equal_folder_cell_states(tmp_path, monkeypatch):
    spec = SweepSpec(name="s", experiments=["regex_a"], seeds=[0, 1, 2, 3, 4])
    cells = expand(spec)
    add_run(tmp_path, cells[0], "failed", error="ValueError: first try")
    add_run(tmp_path, cells[0], "completed")  # v2 done: the cell is done
    add_run(tmp_path, cells[1], "failed", error="CorpusError: too few strings")
    add_run(tmp_path, cells[2], "running", pid=os.getpid(), heartbeat=1.0)  # nobody holds it
    RunIndex(tmp_path).reindex()
    add_run(tmp_path, cells[3], "completed")  # not indexed yet: read from its folder
    keys = [(c.config.name, c.config_hash) for c in cells]
    previous = [None] * len(cells)
    by_folders = coordinator.cell_states(tmp_path, keys, previous)
    monkeypatch.setattr(coordinator, "BULK_CELLS", 1)
    by_index = coordinator.cell_states(tmp_path, keys, previous)
    assert by_index == by_folders
    assert [s.status for s in by_index] == ["done", "failed", "interrupted", "done", "todo"]
    assert by_index[0].run_id.endswith("-v2") and by_index[1].error.startswith("CorpusError")
