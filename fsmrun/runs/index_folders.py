"""Reading many run folders at once for the index: the rows of the folders a check found
changed, the hash folders of a reindex with their listings (in worker processes when there
are many), and the settled listing of a folder (index_scan says which folders to read)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fsmrun.runs.index_columns import IndexedRun, read_indexed_run
from fsmrun.runs.layout import ResultsFolderError, list_versions
from fsmrun.runs.run_folder import RUN_FILE, RunFolderError

PARALLEL_MIN = 2000  # below this many folders, worker start-up costs more than it saves
# A folder mtime younger than this may still change within the same clock tick: not trusted.
SETTLED_S = 2.0
_CHUNK = 256
# Readers of many folders: at least this many processes, even on fewer cores. A folder not in
# the page cache is a wait on the disk, which other readers fill: reindexing 10,000 folders
# after `echo 1 > /proc/sys/vm/drop_caches` took 5.7-7.2 s with four readers on two cores,
# 8.2-9.8 s with two; from the page cache, 3.9-4.0 s either way.
READERS_MIN = 4


def _read_one(root: str, rel: str) -> IndexedRun | str | None:
    """The folder's IndexedRun; None if it is no run folder; the reason it cannot be read.
    (Plain string paths: a reindex calls this once per run folder.)"""
    folder = f"{root}/{rel}"
    if not os.path.isfile(f"{folder}/{RUN_FILE}"):
        return None
    try:
        return read_indexed_run(root, folder, rel)
    except (ResultsFolderError, RunFolderError) as exc:
        return str(exc)


def _read_chunk(root: str, rels: list[str]) -> list[IndexedRun | str | None]:
    return [_read_one(root, rel) for rel in rels]


def settled_listing(
    folder: str | os.PathLike[str], *, versions: bool
) -> tuple[int, list[str]] | None:
    """(mtime_ns, sorted names) of a folder's visible entries (`versions`: its v<N>
    folders), the mtime taken before listing; None when it is too recent to be trusted (a
    change within the same clock tick would not move it) or cannot be read."""
    try:
        mtime = os.stat(folder).st_mtime_ns
        if time.time_ns() - mtime <= SETTLED_S * 1e9:
            return None
        names = (
            [f"v{n}" for n in list_versions(Path(folder))] if versions else visible_names(folder)
        )
    except OSError:
        return None
    return mtime, names


def visible_names(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted names in `folder` not starting with '.' ([] if it is no folder)."""
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []


def _hash_chunk(root: str, rel_hashes: list[str]) -> list[tuple[str, str, Any]]:
    """For each hash folder: ("dir", folder, (mtime_ns, versions joined by '/') or None if
    its listing is not to be trusted), then ("run", run folder, its index row values) or
    ("bad", run folder, why it is unreadable) per version. Files and gone folders: nothing."""
    out: list[tuple[str, str, Any]] = []
    for rel_hash in rel_hashes:
        hash_dir = f"{root}/{rel_hash}"
        if not os.path.isdir(hash_dir):
            continue
        listing = settled_listing(hash_dir, versions=True)
        out.append(("dir", rel_hash, (listing[0], "/".join(listing[1])) if listing else None))
        versions = listing[1] if listing else [f"v{n}" for n in list_versions(Path(hash_dir))]
        for version in versions:
            rel = f"{rel_hash}/{version}"
            run = _read_one(root, rel)
            if run is not None:
                out.append(
                    ("bad", rel, run) if isinstance(run, str) else ("run", rel, run.values())
                )
    return out


def iter_hash_folders(
    root: str | os.PathLike[str], rel_hashes: list[str], workers: int | None = None
) -> Iterator[tuple[str, str, Any]]:
    """`_hash_chunk` items of every hash folder in `rel_hashes`, in order, as they are listed
    and read (by worker processes when there are many): listing and parsing run side by side,
    and a reindex holds no more than a few chunks of rows at a time."""
    root_s = os.fspath(root)
    workers = workers or _readers()
    chunk = max(1, _CHUNK // 2)
    chunks = [rel_hashes[i : i + chunk] for i in range(0, len(rel_hashes), chunk)]
    if len(rel_hashes) < PARALLEL_MIN or workers < 2 or "fork" not in _start_methods():
        for part in chunks:
            yield from _hash_chunk(root_s, part)
        return
    context = multiprocessing.get_context("fork")  # no re-import: workers start at once
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for part in pool.map(_hash_chunk, [root_s] * len(chunks), chunks):
            yield from part


def read_folders(
    root: str | os.PathLike[str], rels: Iterable[str], workers: int | None = None
) -> list[tuple[str, IndexedRun | str]]:
    """(folder, IndexedRun or the reason it is unreadable) of each run folder in `rels`,
    in order; folders without run.json are left out. Many folders are read by worker
    processes (`workers`, default one per CPU and at least READERS_MIN), few in this
    process."""
    root_s, rels = os.fspath(root), list(rels)
    workers = workers or _readers()
    if len(rels) < PARALLEL_MIN or workers < 2 or "fork" not in _start_methods():
        results = _read_chunk(root_s, rels)
    else:
        chunks = [rels[i : i + _CHUNK] for i in range(0, len(rels), _CHUNK)]
        context = multiprocessing.get_context("fork")  # no re-import: workers start at once
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = [r for part in pool.map(_read_chunk, [root_s] * len(chunks), chunks)
                       for r in part]  # fmt: skip
    return [(rel, r) for rel, r in zip(rels, results, strict=True) if r is not None]


def _readers() -> int:
    return max(READERS_MIN, os.cpu_count() or 1)


def _start_methods() -> list[str]:
    return multiprocessing.get_all_start_methods()
