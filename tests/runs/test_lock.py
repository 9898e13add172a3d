"""The writer lock of a folder: one holder at a time, probed without being taken, a new
folder's lock file never seen free, leftovers cleared, and no dependence on run files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fsmrun.base.errors import UserError
from fsmrun.runs.lock import LOCK_FILE, FolderLock, lock_held, pid_alive, remove_leftovers


def test_the_lock_admits_one_holder_at_a_time(tmp_path):
    first, second = FolderLock(tmp_path), FolderLock(tmp_path)
    assert first.acquire() is True and first.held
    assert second.acquire() is False and not second.held
    first.release()
    assert not first.held
    assert second.acquire() is True  # released: taken by the other
    second.release()


def test_the_lock_is_probed_without_being_taken(tmp_path):
    lock = FolderLock(tmp_path)
    assert lock_held(tmp_path) is None  # no lock file: cannot tell
    assert lock.acquire()
    assert lock_held(tmp_path) is True
    lock.release()
    assert lock_held(tmp_path) is False


def test_a_new_folders_lock_file_appears_already_locked(tmp_path):
    lock = FolderLock(tmp_path)
    assert lock.acquire(new_folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]  # `.lock.new` renamed in
    assert lock_held(tmp_path) is True
    lock.release()


def test_a_lock_held_by_another_process_is_seen_and_refused(tmp_path):
    (tmp_path / LOCK_FILE).touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(tmp_path / LOCK_FILE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert lock_held(tmp_path) is True
        assert FolderLock(tmp_path).acquire() is False
    finally:
        holder.communicate("")
    assert FolderLock(tmp_path).acquire() is True  # the holder ended: free again


def test_leftovers_of_killed_writes_are_removed_and_finished_files_kept(tmp_path):
    (tmp_path / "sub").mkdir()
    temp = tmp_path / "sub" / "..last.pt.new.0a1b2c3d.tmp"
    partial = tmp_path / "sub" / ".last.pt.new"
    kept = tmp_path / "sub" / "last.pt"
    for path in (temp, partial, kept):
        path.write_bytes(b"x")
    missing = tmp_path / ".best.pt.new"
    removed = remove_leftovers(tmp_path, [partial, missing])
    assert removed == [temp, partial]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["last.pt"]


def test_this_process_is_alive_and_a_reaped_one_is_not():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(0)


def test_the_lock_module_stands_on_no_run_folder_or_registry_module():
    code = (
        "import json, sys, fsmrun.runs.lock; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('fsmrun.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "fsmrun.runs.lock" in loaded
    assert "fsmrun.runs.layout" not in loaded
    assert "fsmrun.runs.run_folder" not in loaded


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_nothing_is_created(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "elsewhere" / "lockfile")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        FolderLock(tmp_path / "run").acquire()
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert lock_held(tmp_path / "run") is None  # a probe does not follow it either
