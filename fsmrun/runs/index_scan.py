"""Which run folders the index does not describe any more, found by directory mtimes alone,
and reading many folders at once (in worker processes when there are many).

A run folder's mtime changes whenever a file in it is replaced (every fsmrun write is a
rename into it) and a hash folder's whenever a version is claimed or removed; the index
keeps both as they were when it read them. A listing stats the folders (no parsing) and reads
only those whose mtime moved, those it has no row for and those recorded as running (their
heartbeat lives in run.json). A file edited in place (not replaced) keeps the folder's mtime:
`fsmrun ls --reindex` reads it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fsmrun.runs.index_columns import IndexedRun, read_indexed_run
from fsmrun.runs.layout import RegistryError, list_versions
from fsmrun.runs.run_folder import RunFolder, RunFolderError

log = logging.getLogger(__name__)

PARALLEL_MIN = 2000  # below this many folders, worker start-up costs more than it saves
_CHUNK = 256


@dataclass
class Known:
    """What the index holds: each run folder's (mtime_ns, recorded status), and each hash
    folder's mtime_ns at a time when all of its versions were indexed."""

    runs: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    """`stale`: run folders to read (relative paths); `excluded`: indexed folders whose
    rows are out of date or whose folder is gone."""

    stale: list[str]
    excluded: set[str]


def _experiments(root: str, experiment: str | None) -> list[str]:
    if experiment is not None:
        return [experiment]
    try:
        return sorted(n for n in os.listdir(root) if not n.startswith("."))
    except OSError:
        return []


def find_changes(root: str | os.PathLike[str], known: Known, experiment: str | None) -> Changes:
    """Compare the folders under `root` (one experiment's, if given) with what is known."""
    root_s = os.fspath(root)
    by_hash: dict[str, list[str]] = {}
    for rel in known.runs:
        by_hash.setdefault(rel.rsplit("/", 1)[0], []).append(rel)
    remaining = dict(known.runs)
    stale: list[str] = []
    excluded: set[str] = set()
    for exp in _experiments(root_s, experiment):
        exp_dir = os.path.join(root_s, exp)
        try:
            names = os.listdir(exp_dir)
        except OSError:  # not a folder (the index file, a stray file) or gone
            continue
        for name in names:
            if name.startswith("."):
                continue
            rel_hash = f"{exp}/{name}"
            hash_dir = os.path.join(exp_dir, name)
            try:
                hash_stat = os.stat(hash_dir)
            except OSError:
                continue
            if not stat.S_ISDIR(hash_stat.st_mode):
                continue
            if known.dirs.get(rel_hash) == hash_stat.st_mtime_ns and rel_hash in by_hash:
                versions = by_hash[rel_hash]
            else:
                versions = [f"{rel_hash}/v{n}" for n in list_versions(Path(hash_dir))]
            for rel in versions:
                try:
                    mtime_ns = os.stat(os.path.join(root_s, rel)).st_mtime_ns
                except OSError:
                    continue  # gone: stays in `remaining`
                entry = remaining.pop(rel, None)
                if entry is None or entry[0] != mtime_ns or entry[1] == "running":
                    stale.append(rel)
                    if entry is not None:
                        excluded.add(rel)
    excluded.update(remaining)
    return Changes(sorted(stale), excluded)


def _read_one(root: str, rel: str) -> IndexedRun | str | None:
    """The folder's IndexedRun; None if it is no run folder; the reason it cannot be read."""
    folder = Path(root) / rel
    if not RunFolder(folder).is_run():
        return None
    try:
        return read_indexed_run(root, folder)
    except (RegistryError, RunFolderError) as exc:
        return str(exc)


def _read_chunk(root: str, rels: list[str]) -> list[IndexedRun | str | None]:
    return [_read_one(root, rel) for rel in rels]


def read_folders(
    root: str | os.PathLike[str], rels: Iterable[str], workers: int | None = None
) -> list[tuple[str, IndexedRun | str]]:
    """(folder, IndexedRun or the reason it is unreadable) of each run folder in `rels`,
    in order; folders without run.json are left out. Many folders are read by worker
    processes (`workers`, default one per CPU), few in this process."""
    root_s, rels = os.fspath(root), list(rels)
    workers = workers or os.cpu_count() or 1
    if len(rels) < PARALLEL_MIN or workers < 2 or "fork" not in _start_methods():
        results = _read_chunk(root_s, rels)
    else:
        chunks = [rels[i : i + _CHUNK] for i in range(0, len(rels), _CHUNK)]
        context = multiprocessing.get_context("fork")  # no re-import: workers start at once
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = [r for part in pool.map(_read_chunk, [root_s] * len(chunks), chunks)
                       for r in part]  # fmt: skip
    return [(rel, r) for rel, r in zip(rels, results, strict=True) if r is not None]


def _start_methods() -> list[str]:
    return multiprocessing.get_all_start_methods()
