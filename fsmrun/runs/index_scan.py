"""Which run folders the index does not describe any more, found by directory mtimes alone
(reading them is index_folders').

A run folder's mtime changes whenever a file in it is replaced (every fsmrun write is a
rename into it) and a hash folder's whenever a version is claimed or removed; the index
keeps both as they were when it read them. A listing stats the folders (no parsing) and reads
only those whose mtime moved, those it has no row for and those recorded as running (their
heartbeat lives in run.json). A file edited in place (not replaced) keeps the folder's mtime:
`fsmrun ls --reindex` reads it. The newest page of `ls` needs less (`find_new_runs`): the
experiment and hash folder mtimes say which runs came or went; the caller checks the run
folders of the rows it shows.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fsmrun.runs.layout import VERSION_RE as _VERSION_RE

log = logging.getLogger(__name__)

EXPERIMENT_BATCH = 512  # experiment folders compared at a time (what is held in memory)
SHARED_MIN = 4 * EXPERIMENT_BATCH  # from this many experiment folders, two processes check


@dataclass
class Known:
    """What the index holds: each run folder's mtime_ns, the folders recorded as running,
    and folders whose listing it knows: path -> (path, mtime_ns, child names joined by '/'), kept
    for an experiment folder whose hash folders are all known and a hash folder whose
    versions are all indexed."""

    runs: dict[str, int | None] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    dirs: dict[str, tuple[str, int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    """`stale`: run folders to read (relative paths); `excluded`: indexed folders whose
    rows are out of date or whose folder is gone."""

    stale: list[str]
    excluded: set[str]
    experiments: list[str] | None = None  # find_new_runs: the experiment folders there are


def _experiments(root: str, experiment: str | None) -> list[str]:
    if experiment is not None:
        return [experiment]
    try:
        return sorted(n for n in os.listdir(root) if not n.startswith("."))
    except OSError:
        return []


def _children(
    path: str, rel: str, dirs: dict[str, tuple[str, int, str]]
) -> tuple[list[str] | None, bool]:
    """Names in folder `path` (None if it is no folder), and whether they are the index's
    (its listing as of the folder's mtime now: names it already checked) or listed now."""
    try:
        st = os.stat(path)
    except OSError:
        return None, False
    if not stat.S_ISDIR(st.st_mode):
        return None, False
    entry = dirs.get(rel)
    if entry is not None and entry[1] == st.st_mtime_ns:
        return (entry[2].split("/") if entry[2] else []), True
    try:
        return os.listdir(path), False
    except OSError:
        return None, False


def find_changes(
    root: str | os.PathLike[str],
    experiment: str | None,
    load: Callable[[list[str], str, str], Known],
    share: Share | None = None,
) -> Changes:
    """Compare the folders under `root` (one experiment's, if given) with what the index
    knows, `EXPERIMENT_BATCH` experiment folders at a time: `load(names, lo, hi)` gives what
    it knows of the run folders in [lo, hi) and of the listings of those experiments. The
    ranges follow one another and cover every folder string, so a row of an experiment folder
    that is gone falls in one of them and is excluded; memory stays flat in the runs.
    `share`: only the batches this process takes of a check two processes share."""
    root_s = os.fspath(root)
    stale: list[str] = []
    excluded: set[str] = set()
    _, taken = _taken_batches(root_s, experiment, share)
    for batch, lo, hi in taken:
        part = _compare(root_s, load(batch, lo, hi), batch)
        stale += part.stale
        excluded |= part.excluded
    return Changes(sorted(stale), excluded)


class Share:
    """One freshness check shared by two processes (forked after this is made): the
    experiment folders as listed once for both, and which batches each has taken. One
    process takes batches from the front, the other from the back, until they meet, so
    whichever has time left does more. A batch at the meeting point may be checked by both
    (harmless: the changes are merged); none is left out, since each side takes its batches
    in order and stops only at one the other has taken."""

    def __init__(self, root: str | os.PathLike[str], experiment: str | None) -> None:
        self.experiments = _experiments(os.fspath(root), experiment)
        # [the front's next batch, the lowest batch the back has taken]: shared memory
        self.marks = multiprocessing.get_context("fork").RawArray("q", [0, 1 << 62])
        self.front = True

    def back(self) -> Share:
        """This Share as the side that takes batches from the back."""
        other = copy.copy(self)
        other.front = False
        return other

    def take(self, count: int) -> Iterator[int]:
        """The numbers of the batches (of `count`) this side takes, as it comes to each."""
        marks = self.marks
        if self.front:
            for number in range(count):
                if number >= marks[1]:
                    return
                marks[0] = number + 1
                yield number
        else:
            for number in reversed(range(count)):
                if number < marks[0]:
                    return
                marks[1] = number
                yield number


def _taken_batches(
    root_s: str, experiment: str | None, share: Share | None
) -> tuple[list[str], Iterator[tuple[list[str], str, str]]]:
    """The experiment folders a check covers (listed now, or once for both sides of a
    `share`) and the batches of them (`_batches`) this process takes: all without a share."""
    names = share.experiments if share is not None else _experiments(root_s, experiment)
    batches = list(_batches(names, experiment))
    numbers = share.take(len(batches)) if share is not None else range(len(batches))
    return names, (batches[number] for number in numbers)


def merge(first: Changes, second: Changes) -> Changes:
    """The changes two processes found in the parts of one check they took."""
    return Changes(sorted({*first.stale, *second.stale}), first.excluded | second.excluded)


def _batches(names: list[str], experiment: str | None) -> Iterator[tuple[list[str], str, str]]:
    """EXPERIMENT_BATCH experiment names at a time, in the order of their folders, with the
    range [lo, hi) of folder strings that is theirs; the ranges follow one another from ''
    to the largest string (one experiment's own range when `experiment` is given)."""
    names = sorted(names, key=lambda n: n + "/")  # the order of "name/..." folder strings
    for start in range(0, max(len(names), 1), EXPERIMENT_BATCH):
        batch = names[start : start + EXPERIMENT_BATCH]
        end = start + EXPERIMENT_BATCH
        lo = batch[0] + "/" if start and batch else ""
        hi = names[end] + "/" if end < len(names) else "\U0010ffff"
        if experiment is not None:
            lo, hi = experiment + "/", experiment + "0"  # '0' follows '/'
        yield batch, lo, hi


def _compare(root_s: str, known: Known, experiments: list[str]) -> Changes:
    """Compare the folders of `experiments` with what is known of them. (At 100,000 runs
    this makes 217,000 stat calls; the loop around them is kept lean.)"""
    remaining = dict(known.runs)
    pop, running, dirs, match, stat_ = (
        remaining.pop,
        known.running,
        known.dirs,
        _VERSION_RE.match,
        os.stat,
    )
    missing = object()
    stale: list[str] = []
    for exp in experiments:
        hash_names, _ = _children(f"{root_s}/{exp}", exp, dirs)
        for name in hash_names or ():
            if name.startswith("."):
                continue
            rel_hash = f"{exp}/{name}"
            names, indexed = _children(f"{root_s}/{rel_hash}", rel_hash, dirs)
            for version in names or ():
                if not indexed and not match(version):  # the index keeps only versions
                    continue
                rel = f"{rel_hash}/{version}"
                try:
                    mtime_ns = stat_(f"{root_s}/{rel}").st_mtime_ns
                except OSError:
                    continue  # gone: stays in `remaining`
                if pop(rel, missing) != mtime_ns or rel in running:
                    stale.append(rel)
    excluded = set(remaining)
    excluded.update(rel for rel in stale if rel in known.runs)
    return Changes(sorted(stale), excluded)


def find_new_runs(
    root: str | os.PathLike[str],
    experiment: str | None,
    load: Callable[[list[str], str, str], Known],
    rows_under: Callable[[str], dict[str, int | None]],
    share: Share | None = None,
) -> Changes:
    """The light check of `find_changes` for a listing of the newest runs: runs copied in or
    deleted and rows recorded as running, found from the experiment and hash folder mtimes
    alone (no run folder is stat'ed under a hash folder whose listing the index knows as of
    its mtime). A run folder edited in place is not seen here: the caller checks the few
    rows it shows. `load` is `find_changes`'s (`known.runs` is not used); `rows_under(prefix)`
    gives the indexed (folder, mtime) pairs under an experiment or hash folder that changed.
    `share`: only the batches of experiment folders this process takes of a check two
    processes share (a large registry's)."""
    root_s = os.fspath(root)
    stale: list[str] = []
    excluded: set[str] = set()
    running: set[str] = set()
    experiments, taken = _taken_batches(root_s, experiment, share)
    for batch, lo, hi in taken:
        known = load(batch, lo, hi)
        running |= known.running
        _new_in(root_s, known, batch, rows_under, stale, excluded)
    for rel in running:  # their heartbeat lives in run.json: always read
        if os.path.isdir(f"{root_s}/{rel}") and rel not in stale:
            stale.append(rel)
    excluded.update(stale)
    return Changes(sorted(stale), excluded, experiments)


def _new_in(
    root_s: str,
    known: Known,
    experiments: list[str],
    rows_under: Callable[[str], dict[str, int | None]],
    stale: list[str],
    excluded: set[str],
) -> None:
    """find_new_runs over one batch of experiments: adds to `stale` and `excluded`."""
    for exp in experiments:
        listed = known.dirs.get(exp)
        hash_names, _ = _children(f"{root_s}/{exp}", exp, known.dirs)
        if hash_names is None:  # the experiment folder is gone (or was never one)
            excluded.update(rows_under(exp))
            continue
        if listed is None or set(listed[2].split("/")) != set(hash_names):  # came or went
            present = {f"{exp}/{n}/" for n in hash_names}
            excluded.update(f for f in rows_under(exp) if f[: f.rindex("/") + 1] not in present)
        for name in hash_names:
            if name.startswith("."):
                continue
            rel_hash = f"{exp}/{name}"
            try:
                mtime_ns = os.stat(f"{root_s}/{rel_hash}").st_mtime_ns
            except OSError:
                continue
            entry = known.dirs.get(rel_hash)
            if entry is not None and entry[1] == mtime_ns:
                continue  # its versions are the indexed rows, as of this mtime
            indexed = rows_under(rel_hash)
            for version in _listing(f"{root_s}/{rel_hash}"):
                rel = f"{rel_hash}/{version}"
                try:
                    run_mtime = os.stat(f"{root_s}/{rel}").st_mtime_ns
                except OSError:
                    continue
                if indexed.pop(rel, None) != run_mtime:
                    stale.append(rel)
            excluded.update(indexed)  # gone from the folder


def _listing(path: str) -> list[str]:
    try:
        return [n for n in os.listdir(path) if _VERSION_RE.match(n)]
    except OSError:
        return []
