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


PASS_EVERY_POINT = """
from fsmrun.base import faults
for point in faults.POINTS * 3:
    faults.fault_point(point)
print(len(faults.ARMED), len(faults._seen))
"""


@pytest.mark.parametrize("value", [None, "", "index_txn:4"])
def test_points_not_armed_or_not_reached_often_enough_never_kill(value):
    env = {k: v for k, v in os.environ.items() if k != faults.FAULT_ENV_VAR}
    if value is not None:
        env[faults.FAULT_ENV_VAR] = value
    proc = subprocess.run(
        [sys.executable, "-c", PASS_EVERY_POINT], env=env, capture_output=True, text=True
    )
    # every point passed 3 times and the process lived; only an armed point is counted
    armed = 1 if value else 0
    assert (proc.returncode, proc.stdout.split()) == (0, [str(armed), str(armed)]), proc.stderr


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
