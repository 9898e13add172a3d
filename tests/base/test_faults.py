"""FSMRUN_FAULT: which point and occurrence kill the process; unset, nothing happens."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fsmrun.base import faults


def test_the_variable_names_a_point_and_an_occurrence():
    assert faults._armed(None) == {} and faults._armed("") == {}
    assert faults._armed("prev_renamed") == {"prev_renamed": 1}
    assert faults._armed("history_mid_line:3") == {"history_mid_line": 3}
    with pytest.raises(ValueError, match="unknown point; one of tmp_written"):
        faults._armed("nowhere")


def test_unset_fault_points_do_nothing():
    for point in faults.POINTS:
        faults.fault_point(point)  # still alive


KILL_AT_SECOND = """
from fsmrun.base.faults import fault_point
for i in range(3):
    print(i, flush=True)
    fault_point("index_txn")
"""


def test_the_process_dies_at_the_named_occurrence():
    env = {**os.environ, "FSMRUN_FAULT": "index_txn:2"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT_SECOND], env=env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.split()) == (137, ["0", "1"])
