"""Run history: validated JSON lines, append-only, torn lines dropped, truncation."""

from __future__ import annotations

import json

from fsmrun.schemas.records import HistoryRecord
from fsmrun.train.history import HistoryWriter, read_history, read_history_lines


def _record(step: int) -> HistoryRecord:
    return HistoryRecord(kind="train", step=step, epoch=0, time=1.0, losses={"total": 0.5})


def test_history_lines_are_appended_and_flushed_as_written(tmp_path):
    path = tmp_path / "logs" / "history.jsonl"
    writer = HistoryWriter(path)
    writer.append(_record(1))
    assert json.loads(path.read_text().splitlines()[0])["step"] == 1  # visible before close
    writer.append(_record(2))
    writer.close()
    again = HistoryWriter(path)  # reopening appends, never rewrites
    again.append(_record(3))
    again.close()
    assert [r.step for r in read_history(path)] == [1, 2, 3]
    assert again.count == 3


def test_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(_record(1).model_dump_json() + "\n" + '{"kind": "tra')
    assert len(read_history_lines(path)) == 1
    assert HistoryWriter(path).count == 1


def test_truncate_keeps_the_first_lines_and_continues_appending(tmp_path):
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    for step in range(5):
        writer.append(_record(step))
    writer.truncate(2)
    writer.append(_record(9))
    writer.close()
    assert [r.step for r in read_history(path)] == [0, 1, 9]
