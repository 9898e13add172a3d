"""The determinism audit names a differing torch thread count as the reason bits differ."""

from __future__ import annotations

import torch

from fsmrun.analysis.audit import _name_thread_counts
from fsmrun.base.env import collect_env
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.cli import AuditCheck


def _check(status: str) -> AuditCheck:
    return AuditCheck(
        check="final_weights", compared="run 1 vs run 2", status=status, max_abs_diff=1e-7,
        detail="largest in lstm.weight",
    )  # fmt: skip


def test_a_differing_thread_count_is_named_where_bits_differ(tmp_path):
    env = collect_env(torch.device("cpu"), 0, False, None)
    for name, threads in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        RunFolder(tmp_path / name).write_env(env.model_copy(update={"threads": threads}))
    a, b = tmp_path / "a", tmp_path / "b"
    checks = _name_thread_counts(a, b, "run 1 vs run 2", [_check("different")])
    assert [c.check for c in checks] == ["threads", "final_weights"]
    assert checks[0].status == "different"
    assert "torch threads differ (1 vs 2): CPU bits depend on it" in checks[1].detail
    same = _name_thread_counts(a, b, "run 1 vs run 2", [_check("identical")])
    assert [c.check for c in same] == ["final_weights"]  # bits equal: nothing to explain
    assert _name_thread_counts(a, a, "x", [_check("different")])[0].check == "final_weights"
