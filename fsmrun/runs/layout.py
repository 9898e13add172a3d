"""The results folder's layout: version claims on run folders, run lookup, the places of the
runs `<root>/<experiment>/<hash12>/v<N>/` (see `run_folder`), the corpus cache and audits."""

from __future__ import annotations

import difflib
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from fsmrun.base.errors import UserError
from fsmrun.base.faults import fault_point
from fsmrun.base.io import WriteError
from fsmrun.runs.lock import lock_held
from fsmrun.runs.run_folder import RUN_FILE, RunFolder, RunFolderError
from fsmrun.schemas.records import RunRecord

RESULTS_ENV_VAR = "FSMRUN_RESULTS_DIR"
DEFAULT_RESULTS_DIR = "results"
HASH_PREFIX_LEN = 12
CORPUS_CACHE_DIR = ".cache/corpora"
AUDITS_DIR = "audits"
VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
FIX_HINT = (
    f"choose a writable folder with --results-dir or the {RESULTS_ENV_VAR} environment variable"
)


class ResultsFolderError(UserError):
    """A results-folder problem a user can fix (unwritable folder, unknown run, bad key)."""


class RunNotFound(ResultsFolderError):
    """No run matches a reference; `suggestions` holds close run ids."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


class AmbiguousRun(ResultsFolderError):
    """A prefix matches several runs; `candidates` holds their ids."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


def default_results_root(value: str | os.PathLike[str] | None = None) -> Path:
    """`value` if given, else $FSMRUN_RESULTS_DIR, else ./results."""
    if value:
        return Path(value)
    return Path(os.environ.get(RESULTS_ENV_VAR) or DEFAULT_RESULTS_DIR)


def corpus_cache_dir(root: str | os.PathLike[str]) -> Path:
    """`<root>/.cache/corpora`: generated corpora, shared by every run of the results folder."""
    return Path(root) / CORPUS_CACHE_DIR


def check_writable(root: str | os.PathLike[str]) -> Path:
    """The results folder can be written: a writable folder, or, where it does not exist yet,
    its nearest existing parent is one (it is made later, by the first write). Creates
    nothing, so a run refused afterwards leaves no folder behind. Its path."""
    root = Path(root)
    existing = root
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            break
        existing = existing.parent
    if not existing.is_dir():
        reason = "not a folder" if existing.exists() else "a broken link"
        raise ResultsFolderError(
            f"cannot create the results folder {root} ({existing} is {reason}); choose another "
            f"with --results-dir or {RESULTS_ENV_VAR}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "results folder" if existing == root else f"parent folder {existing} of"
        raise ResultsFolderError(
            f"the {what} {root} is not writable; choose another with --results-dir "
            f"or {RESULTS_ENV_VAR}"
        )
    return root


def is_plain_name(name: str) -> bool:
    """A single folder name under the results root: no separator, not hidden, not '..'."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def run_id_for(experiment: str, config_hash: str, version: int) -> str:
    """'<experiment>-<hash12>-v<N>'."""
    return f"{experiment}-{config_hash[:HASH_PREFIX_LEN]}-v{version}"


# ---------------------------------------------------------------------------- run folders


def list_versions(hash_dir: Path) -> list[int]:
    """Versions N with a v<N> folder under `hash_dir`, ascending (hidden trash names skipped)."""
    try:
        names = os.listdir(hash_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(VERSION_RE.match, names) if m)


def make_dirs(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsFolderError(
            f"cannot create folder {folder} ({exc.strerror}); {FIX_HINT}"
        ) from exc


CLAIM_PREFIX = ".claim-"
STALE_CLAIM_S = 60.0  # a claim folder this old without a lock file belongs to a killed process


def _remove_stale_claims(hash_dir: Path) -> None:
    """Delete `.claim-*` folders of claims killed before their rename (lock free)."""
    for name in os.listdir(hash_dir):
        if not name.startswith(CLAIM_PREFIX):
            continue
        claim = hash_dir / name
        held = lock_held(claim)
        try:
            age = time.time() - claim.stat().st_mtime
        except OSError:
            continue
        if held is False or (held is None and age > STALE_CLAIM_S):
            shutil.rmtree(claim, ignore_errors=True)


def _claim(
    hash_dir: Path, first: int, make_files: Callable[[RunFolder, int], None] | None
) -> RunFolder:
    """Build the run folder under a hidden temporary name, its lock held and `make_files`
    (run.json, config.json) written, then rename it to v<N> for the smallest free N >= first.
    A rename never replaces a non-empty folder, so one process wins each N; a killed claim
    leaves only a hidden `.claim-*` folder, removed by the next claim."""
    folder = RunFolder(hash_dir / f"{CLAIM_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        os.mkdir(folder.path)
        folder.acquire_lock(new_folder=True)  # never empty; its lock held from here on
        version = first
        for _ in range(100_000):
            if make_files is not None:
                make_files(folder, version)
            fault_point("version_claim")
            try:
                os.rename(folder.path, hash_dir / f"v{version}")
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                version += 1
                continue
            folder.path = hash_dir / f"v{version}"
            return folder
    except BaseException as exc:
        folder.release_lock()
        shutil.rmtree(folder.path, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):  # mkdir, rename
            raise ResultsFolderError(
                f"cannot create a run folder in {hash_dir} ({exc}); {FIX_HINT}"
            ) from exc
        raise  # a failed write (disk full) names its file
    raise ResultsFolderError(f"no free version under {hash_dir}")


def version_of(folder: Path) -> int:
    """N of a `v<N>` folder."""
    return int(folder.name[1:])


def claim_run_folder(
    root: str | os.PathLike[str],
    experiment: str,
    config_hash: str,
    make_files: Callable[[RunFolder, int], None] | None = None,
    *,
    overwrite: bool = False,
) -> RunFolder:
    """Claim `<root>/<experiment>/<hash12>/v<N>/` atomically and return it, its writer lock
    held: it appears with the files `make_files(folder, N)` wrote (run.json first) or not at all.

    N is one past the newest version; two processes started together get different versions.
    With `overwrite`, the newest version is replaced (moved aside atomically, claimed again,
    then its old tree deleted); a run whose writer still holds its lock is refused.
    """
    hash_dir = Path(root) / experiment / config_hash[:HASH_PREFIX_LEN]
    make_dirs(hash_dir)
    _remove_stale_claims(hash_dir)
    existing = list_versions(hash_dir)
    if overwrite and existing:
        newest = existing[-1]
        folder = hash_dir / f"v{newest}"
        RunFolder(folder).refuse_if_written()
        trash = hash_dir / f".trash-v{newest}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:  # another process moved it first: take a fresh version
            return claim_run_folder(root, experiment, config_hash, make_files)
        except OSError as exc:
            raise ResultsFolderError(
                f"cannot replace {folder} ({exc.strerror}); {FIX_HINT}"
            ) from exc
        claimed = _claim(hash_dir, newest, make_files)
        shutil.rmtree(trash, ignore_errors=True)
        return claimed
    return _claim(hash_dir, existing[-1] + 1 if existing else 1, make_files)


def iter_run_folders(root: str | os.PathLike[str], experiment: str | None = None) -> Iterator[Path]:
    """Every `<root>/<experiment>/<hash>/v<N>/` holding a run.json, in path order."""
    root = Path(root)
    if not root.is_dir():
        return
    experiments = [experiment] if experiment else sorted(os.listdir(root))
    for exp in experiments:
        exp_dir = root / exp
        if exp.startswith(".") or not exp_dir.is_dir():
            continue
        for hash_name in sorted(os.listdir(exp_dir)):
            if hash_name.startswith(".") or not (exp_dir / hash_name).is_dir():
                continue
            for version in list_versions(exp_dir / hash_name):
                folder = exp_dir / hash_name / f"v{version}"
                if RunFolder(folder).is_run():
                    yield folder


def runs_of_config(
    root: str | os.PathLike[str], experiment: str, config_hash: str
) -> list[tuple[RunFolder, RunRecord]]:
    """The readable runs of one config (full `config_hash`), oldest version first."""
    hash_dir = Path(root) / experiment / config_hash[:HASH_PREFIX_LEN]
    runs = []
    for version in list_versions(hash_dir):
        folder = RunFolder(hash_dir / f"v{version}")
        try:
            record = folder.read_record()
        except RunFolderError:
            continue
        if record.config_hash == config_hash:
            runs.append((folder, record))
    return runs


# ---------------------------------------------------------------------------- lookup


_RUN_ID_RE = re.compile(r"^(.+)-([0-9a-f]{12})-v([1-9][0-9]*)$")


def _run_ids(root: Path, ref: str = "") -> dict[str, Path]:
    """Run ids under `root` by folder; with `ref`, only those that may start with it: the
    experiment folders named by its head and, within one, the hash folders its tail names
    (so resolving a prefix of a long id reads a few folders, not the whole registry)."""
    ids = {}
    experiments = (
        sorted(e for e in os.listdir(root) if not e.startswith(".")) if root.is_dir() else []
    )
    for exp in experiments:
        if exp.startswith(ref):
            candidates = iter_run_folders(root, exp)
        elif ref.startswith(f"{exp}-"):
            tail = ref[len(exp) + 1 :][:HASH_PREFIX_LEN]
            exp_dir = root / exp
            hashes = (
                sorted(h for h in os.listdir(exp_dir) if h.startswith(tail))
                if exp_dir.is_dir()
                else []
            )
            candidates = (
                exp_dir / h / f"v{n}" for h in hashes for n in list_versions(exp_dir / h)
                if RunFolder(exp_dir / h / f"v{n}").is_run()
            )  # fmt: skip
        else:
            continue
        for folder in candidates:
            hash_dir = folder.parent
            ids[run_id_for(hash_dir.parent.name, hash_dir.name, int(folder.name[1:]))] = folder
    return ids


def _why_not_a_run_folder(path: Path) -> str:
    """What is wrong with a path given as a run folder, in words."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops (it points back to itself); fix or remove it"
        if path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if exc.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({exc.strerror})"
    if path.is_dir():
        return f"is a folder but not a run folder (no {RUN_FILE} in it)"
    return f"is a file, not a run folder (a run folder holds {RUN_FILE})"


def resolve_run(root: str | os.PathLike[str], ref: str) -> Path:
    """The run folder `ref` names: a run folder path, a run id, or a unique prefix of one."""
    root = Path(root)
    if not ref.strip():
        raise RunNotFound("empty run reference; give a run id, a prefix of one or a run folder")
    for candidate in (Path(ref), root / ref):
        if RunFolder(candidate).is_run():
            return candidate
    if "/" in ref or os.sep in ref:  # run ids hold no slash: this was meant as a folder
        raise RunNotFound(f"{ref} {_why_not_a_run_folder(Path(ref))}")
    whole = _RUN_ID_RE.match(ref)
    if whole and is_plain_name(whole.group(1)):
        exact = root / whole.group(1) / whole.group(2) / f"v{whole.group(3)}"
        if RunFolder(exact).is_run():
            return exact
    ids = _run_ids(root, ref)
    if ref in ids:
        return ids[ref]
    matches = sorted(run_id for run_id in ids if run_id.startswith(ref))
    if len(matches) == 1:
        return ids[matches[0]]
    if matches:
        shown = "\n  ".join(matches[:20]) + ("\n  ..." if len(matches) > 20 else "")
        raise AmbiguousRun(
            f"{ref!r} matches {len(matches)} runs; give more of the id:\n  {shown}", matches
        )
    ids = ids or _run_ids(root)  # none start like it: look for close ones among all
    if not ids:
        raise RunNotFound(f"no run {ref!r}: no runs under {root} (set --results-dir?)")
    close = difflib.get_close_matches(ref, list(ids), n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else "; `fsmrun ls` lists the runs"
    raise RunNotFound(f"no run {ref!r} under {root}{hint}", close)
