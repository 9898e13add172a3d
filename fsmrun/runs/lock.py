"""The exclusive writer lock of a folder: an OS flock on `<folder>/.lock` held by its one
writer for its whole life, probes of whether anyone holds it (or a pid lives), and the
clean-up of leftovers that only the holder may do. It knows nothing of run files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from fsmrun.base.errors import EnvironmentFailure, UserError
from fsmrun.base.io import remove_stale_temp_files

LOCK_FILE = ".lock"
# A reader's probe holds a shared lock for microseconds: retry this often before "busy".
LOCK_ATTEMPTS = 5
_RETRY_S = 0.02
# The lock file is opened without following a symbolic link: a link would make the writer
# create (or lock) a file outside the folder it owns.
_NO_FOLLOW = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) would kill on Windows; rely on heartbeat
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def lock_held(folder: str | os.PathLike[str]) -> bool | None:
    """Whether a process holds the folder's writer lock: a non-blocking shared flock probe on
    `.lock` (nothing is created). None where it cannot be probed (no lock file, no flock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform
        return None
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False


class FolderLock:
    """The exclusive flock on `<folder>/.lock`, taken and released by one owner."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self, *, new_folder: bool = False) -> bool:
        """Take the lock (kept until `release` or the process ends: a stopped process keeps
        it); False when another process holds it. In a `new_folder` the lock file appears
        already locked (made and locked aside, then renamed in), so no probe finds it free.
        EnvironmentFailure if the lock file cannot be opened."""
        if self._fd is not None:
            return True
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform
            return True
        path = self.folder / LOCK_FILE
        aside = self.folder / f"{LOCK_FILE}.new"
        target = aside if new_folder else path
        if target.is_symlink():
            raise UserError(
                f"{target} is a symbolic link; a run's lock must be a plain file inside its "
                f"folder: remove the link"
            )
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
        except OSError as exc:
            raise EnvironmentFailure.from_os_error(exc, path) from exc
        for attempt in range(LOCK_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 == LOCK_ATTEMPTS:
                    os.close(fd)
                    return False
                time.sleep(_RETRY_S)
        self._fd = fd
        if new_folder:
            os.replace(aside, path)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock


def remove_leftovers(folder: str | os.PathLike[str], partial: Iterable[Path] = ()) -> list[Path]:
    """Delete temporary files of writes a killed process never finished, anywhere under
    `folder`, and the `partial` files that exist; the removed paths. Call under the lock."""
    removed = remove_stale_temp_files(folder)
    for path in partial:
        if path.exists():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
