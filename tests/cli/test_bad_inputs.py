"""A catalogue of bad inputs to every command: each ends in its exit code (2 for a user error,
1 for the environment), exactly one `error:` line on stderr, nothing on stdout, no traceback,
and no file written, changed or created (the results folder and its neighbours are compared
before and after, registry.sqlite included)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT_USER = os.name == "posix" and os.geteuid() == 0


@dataclass(frozen=True)
class Env:
    """What a case builds its arguments from: a private copy of two trained tiny runs."""

    root: Path  # results folder with the runs (tiny, seeds 0 and 1)
    toml: Path  # the tiny experiment
    run_ids: list[str]
    folders: list[Path]
    tmp: Path  # scratch space beside the results folder (also compared before and after)

    @property
    def fresh(self) -> Path:
        """A results folder that does not exist: a failing command must not create it."""
        return self.tmp / "fresh"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def damage(self, name: str, content: str | bytes, run: int = 0) -> Path:
        """Replace `name` in the first run folder; the folder (a run reference) is returned."""
        path = self.folders[run] / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return self.folders[run]


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Env], list[str | Path]]
    fragment: str  # a piece of the error line
    code: int = 2
    skip: str | None = None  # a reason to skip here


def train(*extra: str) -> Callable[[Env], list[str | Path]]:
    return lambda e: ["train", e.toml, "--results-dir", e.fresh, "--device", "cpu", *extra]


def train_toml(text: str | bytes, name: str = "exp.toml") -> Callable[[Env], list[str | Path]]:
    return lambda e: ["train", e.file(name, text), "--results-dir", e.fresh, "--device", "cpu"]


def on_run(command: str, *extra: str) -> Callable[[Env], list[str | Path]]:
    """`command RUN ...` on the first run, by id."""
    return lambda e: [command, e.run_ids[0], "--results-dir", e.root, *extra]


def damaged(command: str, name: str, content: str | bytes, *extra: str):
    """`command FOLDER ...` after `name` in the first run folder was replaced by `content`."""
    return lambda e: [command, e.damage(name, content), "--results-dir", e.root, *extra]


def fsm(*args: str) -> Callable[[Env], list[str | Path]]:
    return lambda e: ["fsm", *args]


def fsm_file(option: str, text: str | bytes, *extra: str) -> Callable[[Env], list[str | Path]]:
    return lambda e: ["fsm", option, e.file("lang.txt", text), *extra]


def audit(*extra: str) -> Callable[[Env], list[str | Path]]:
    return lambda e: ["audit-determinism", e.toml, "--results-dir", e.fresh, "--device", "cpu",
                      *extra]  # fmt: skip


DFA_TABLE = """\
states = ["q0", "q1"]
start = "q0"
accepting = ["q1"]
[transitions]
q0 = { a = "q1", b = "q0" }
q1 = { a = "q1", b = "q0" }
"""
RUN_JSON_WRONG_SCHEMA = json.dumps({"run_id": "x", "status": "sleeping"})
GARBAGE = b"\x00\xffgarbage\x80 not json"
TOML_NO_DATA = 'name = "nodata"\n[model]\nd_model = 16\n[train]\nepochs = 1\n'
CUDA = torch.cuda.is_available()

CASES = [
    # -- train: experiments and TOML files
    Case("train-unknown-experiment", lambda e: ["train", "regex_aa", "--results-dir", e.fresh],
         "did you mean 'regex_a'"),
    Case("train-toml-syntax", train_toml('name = "x"\n[data\nregex = "a"\n'), "malformed TOML"),
    Case("train-toml-unknown-key", train_toml('[data]\nregex = "a*"\nalphabet = "ab"\n'
                                              '[train]\nlrr = 0.1\n'), "train.lrr"),
    Case("train-toml-wrong-type", train_toml('[data]\nregex = "a*"\nalphabet = "ab"\n'
                                             '[train]\nepochs = "ten"\n'), "train.epochs"),
    Case("train-toml-missing-data", train_toml(TOML_NO_DATA), "data"),
    Case("train-toml-empty", train_toml(""), "invalid experiment"),
    Case("train-toml-not-utf8", train_toml(b'name = "\xff\xfe"\n'), "cannot read"),
    Case("train-toml-missing", lambda e: ["train", e.tmp / "nope.toml", "--results-dir", e.fresh],
         "nope.toml"),
    Case("train-toml-is-a-folder", lambda e: ["train", _folder(e.tmp / "dir.toml"),
                                              "--results-dir", e.fresh], "dir.toml"),
    Case("train-toml-unreadable", lambda e: ["train", _unreadable(e.file("x.toml", "a = 1")),
                                             "--results-dir", e.fresh], "x.toml",
         skip="root reads any file" if ROOT_USER else None),
    Case("train-toml-bad-regex", train_toml('[data]\nregex = "a("\nalphabet = "ab"\n'),
         "unbalanced"),
    Case("train-toml-alphabet-with-space", train_toml('[data]\nregex = "a*"\nalphabet = "a b"\n'),
         "alphabet"),
    # -- train: --set
    Case("set-typo", train("--set", "train.lrr=0.1"), "did you mean lr"),
    Case("set-typo-section", train("--set", "trian.lr=0.1"), "did you mean train"),
    Case("set-no-equals", train("--set", "train.lr"), "key.path=value"),
    Case("set-empty-key", train("--set", "=3"), "key.path=value"),
    Case("set-bad-value", train("--set", "train.epochs=ten"), "train.epochs"),
    Case("set-a-section", train("--set", "train=1"), "is a section"),
    Case("set-under-a-value", train("--set", "train.lr.max=1"), "is a value"),
    Case("set-name-dotdot", train("--set", "name=.."), "name"),
    Case("set-name-dot", train("--set", "name=."), "name"),
    Case("set-name-traversal", train("--set", "name=../x"), "name"),
    Case("set-name-slash", train("--set", "name=a/b"), "name"),
    Case("set-name-300-chars", train("--set", "name=" + "n" * 300), "name"),
    Case("set-capture-epoch-negative", train("--set", "train.capture_epochs=[-1]"),
         "capture_epochs"),
    Case("set-betas-out-of-range", train("--set", "train.betas=[2,3]"), "betas"),
    Case("set-unknown-monitor", train("--set", "train.monitor=val.nothing"), "monitor"),
    Case("set-state-cap", train("--set", "data.max_states=2"), "data.max_states"),
    Case("set-regex-corpus-cannot-be-filled", train("--set", "data.regex=(ab)*"),
         "cannot fill"),
    # -- train: flags
    Case("train-epochs-0", train("--epochs", "0"), "train.epochs"),
    Case("train-epochs-text", train("--epochs", "ten"), "--epochs"),
    Case("train-lr-negative", train("--lr", "-1"), "train.lr"),
    Case("train-lr-inf", train("--lr", "inf"), "train.lr"),
    Case("train-lr-nan", train("--lr", "nan"), "train.lr"),
    Case("train-batch-size-0", train("--batch-size", "0"), "batch_size"),
    Case("train-bad-device", train("--device", "tpu"), "tpu"),
    Case("train-cuda-without-cuda", train("--device", "cuda"), "CUDA",
         skip="CUDA is available here" if CUDA else None),
    Case("train-unknown-option", train("--epoch", "3"), "--epoch"),
    Case("train-missing-experiment", lambda e: ["train"], "Missing argument"),
    Case("train-results-dir-is-a-file",
         lambda e: ["train", e.toml, "--results-dir", e.file("f", "x"), "--device", "cpu"],
         "not a folder"),
    Case("train-results-dir-under-a-file",
         lambda e: ["train", e.toml, "--results-dir", e.file("f", "x") / "r", "--device", "cpu"],
         "results folder"),
    Case("train-results-dir-read-only",
         lambda e: ["train", e.toml, "--results-dir", _read_only(e.tmp / "ro"), "--device", "cpu"],
         "not writable", skip="root writes anywhere" if ROOT_USER else None),
    Case("unknown-command", lambda e: ["trian", "regex_a"], "No such command"),
    # -- resume
    Case("resume-unknown-run", lambda e: ["resume", "tiny-nosuch-v9", "--results-dir", e.root],
         "no run"),
    Case("resume-ambiguous-prefix", lambda e: ["resume", "tiny-", "--results-dir", e.root],
         "matches 2 runs"),
    Case("resume-dotdot-run", lambda e: ["resume", "../tiny", "--results-dir", e.root],
         "does not exist"),
    Case("resume-empty-run", lambda e: ["resume", "", "--results-dir", e.root], "empty run"),
    Case("resume-completed-without-epochs", on_run("resume"), "--epochs"),
    Case("resume-epochs-0", on_run("resume", "--epochs", "0"), "epochs"),
    Case("resume-epochs-below-done", on_run("resume", "--epochs", "1"), "epochs"),
    Case("resume-run-json-garbage", damaged("resume", "run.json", GARBAGE), "run.json"),
    Case("resume-run-json-wrong-schema", damaged("resume", "run.json", RUN_JSON_WRONG_SCHEMA),
         "run.json"),
    Case("resume-extension-bad-device", on_run("resume", "--epochs", "3", "--device", "tpu"),
         "tpu"),
    Case("resume-every-checkpoint-damaged",
         lambda e: ["resume", _interrupted(_truncate_pt(_truncate_pt(e.folders[0], "last"),
                                                        "last.prev")),
                    "--results-dir", e.root, "--device", "cpu"], "last"),
    Case("resume-history-cut-below-checkpoint",
         lambda e: ["resume", _interrupted(_cut_history(e.folders[0])), "--results-dir", e.root,
                    "--device", "cpu"], "history.jsonl"),
    Case("resume-interrupted-with-patience",
         lambda e: ["resume", _interrupted(e.folders[0]), "--patience", "3", "--results-dir",
                    e.root, "--device", "cpu"], "own stopping rule"),
    Case("resume-lock-held-by-another-process",
         lambda e: ["resume", _held_by_another_process(e.folders[0]), "--results-dir", e.root,
                    "--device", "cpu"], "being written by process"),
    Case("train-overwrite-lock-held-by-another-process",
         lambda e: ["train", e.toml, "--results-dir", _held_by_another_process(e.folders[0])
                    .parents[2], "--overwrite", "--device", "cpu"], "being written by process"),
    Case("resume-results-dir-is-a-file",
         lambda e: ["resume", "tiny", "--results-dir", e.file("f", "x")], "not a folder"),
    Case("show-results-dir-is-a-file",
         lambda e: ["show", "tiny", "--results-dir", e.file("f", "x")], "not a folder"),
    Case("eval-results-dir-is-a-file",
         lambda e: ["eval", "tiny", "--results-dir", e.file("f", "x")], "not a folder"),
    Case("audit-results-dir-is-a-file",
         lambda e: ["audit-determinism", e.toml, "--results-dir", e.file("f", "x")],
         "not a folder"),
    # -- eval
    Case("eval-unknown-run", lambda e: ["eval", "nosuchrun", "--results-dir", e.root], "no run"),
    Case("eval-ambiguous-prefix", lambda e: ["eval", "tiny", "--results-dir", e.root],
         "matches 2 runs"),
    Case("eval-dotdot-run", lambda e: ["eval", "../../no-such-dir", "--results-dir", e.root],
         "does not exist"),
    Case("eval-bad-checkpoint", on_run("eval", "--checkpoint", "first"), "--checkpoint"),
    Case("eval-bad-split", on_run("eval", "--split", "train2"), "--split"),
    Case("eval-bad-device", on_run("eval", "--device", "tpu"), "tpu"),
    Case("eval-run-json-empty", damaged("eval", "run.json", ""), "run.json"),
    Case("eval-config-json-garbage", damaged("eval", "config.json", GARBAGE), "config.json"),
    Case("eval-config-json-wrong-schema", damaged("eval", "config.json", '{"name": 3}'),
         "config.json"),
    Case("eval-config-json-missing", lambda e: ["eval", _remove(e.folders[0] / "config.json"),
                                                "--results-dir", e.root], "config.json"),
    Case("eval-no-checkpoints", lambda e: ["eval", _remove(e.folders[0] / "checkpoints"),
                                           "--results-dir", e.root], "checkpoint"),
    Case("eval-best-pt-garbage", lambda e: ["eval", _only(e.damage("checkpoints/best.pt", GARBAGE),
                                                          "best"), "--results-dir", e.root,
                                            "--device", "cpu"], "best.pt"),
    Case("eval-last-pt-truncated", lambda e: ["eval", _only(_truncate_pt(e.folders[0], "last"),
                                                            "last"), "--checkpoint", "last",
                                              "--results-dir", e.root, "--device", "cpu"],
         "last.pt"),
    Case("eval-best-pt-empty", lambda e: ["eval", _only(e.damage("checkpoints/best.pt", b""),
                                                        "best"), "--results-dir", e.root,
                                          "--device", "cpu"], "best.pt"),
    # -- show
    Case("show-unknown-run", lambda e: ["show", "nosuchrun", "--results-dir", e.root], "no run"),
    Case("show-ambiguous-prefix", lambda e: ["show", "tiny", "--results-dir", e.root],
         "matches 2 runs"),
    Case("show-plain-folder", lambda e: ["show", e.tmp, "--results-dir", e.root],
         "not a run folder"),
    Case("show-missing-folder", lambda e: ["show", e.tmp / "none" / "v1", "--results-dir", e.root],
         "does not exist"),
    Case("show-no-runs", lambda e: ["show", "tiny", "--results-dir", e.fresh], "no runs"),
    Case("show-run-json-garbage", damaged("show", "run.json", GARBAGE), "run.json"),
    Case("show-run-json-truncated", lambda e: ["show", _truncate(e.folders[0] / "run.json"),
                                               "--results-dir", e.root], "run.json"),
    Case("show-run-json-wrong-schema", damaged("show", "run.json", RUN_JSON_WRONG_SCHEMA),
         "run.json"),
    Case("show-config-json-garbage", damaged("show", "config.json", GARBAGE), "config.json"),
    Case("show-config-json-empty", damaged("show", "config.json", ""), "config.json"),
    Case("show-env-json-garbage", damaged("show", "env.json", "{"), "env.json"),
    Case("show-env-json-wrong-schema", damaged("show", "env.json", "[1, 2]"), "env.json"),
    Case("show-metrics-json-garbage", damaged("show", "metrics.json", GARBAGE), "metrics.json"),
    Case("show-metrics-json-truncated", lambda e: ["show", _truncate(e.folders[0] / "metrics.json"),
                                                   "--results-dir", e.root], "metrics.json"),
    # -- ls
    Case("ls-unknown-experiment", lambda e: ["ls", "nosuchexp", "--results-dir", e.root],
         "unknown experiment"),
    Case("ls-experiment-typo", lambda e: ["ls", "tinyy", "--results-dir", e.root],
         "did you mean tiny"),
    Case("ls-experiment-traversal", lambda e: ["ls", "../x", "--results-dir", e.root],
         "unknown experiment"),
    Case("ls-results-dir-is-a-file", lambda e: ["ls", "--results-dir", e.file("f", "x")],
         "not a folder"),
    Case("ls-bad-status", lambda e: ["ls", "--status", "done", "--results-dir", e.root],
         "unknown status"),
    Case("ls-bad-sort-key", lambda e: ["ls", "--sort", "acc", "--results-dir", e.root],
         "unknown sort key"),
    Case("ls-bad-status-in-missing-folder",
         lambda e: ["ls", "--status", "done", "--results-dir", e.fresh], "unknown status"),
    # -- experiments
    Case("experiments-extra-argument", lambda e: ["experiments", "regex_a"], "unexpected"),
    Case("experiments-unknown-option", lambda e: ["experiments", "--all"], "--all"),
    # -- fsm: regexes and alphabets
    Case("fsm-regex-without-alphabet", fsm("a*"), "--alphabet"),
    Case("fsm-bad-regex", fsm("a(b", "--alphabet", "ab"), "unbalanced"),
    Case("fsm-symbol-outside-alphabet", fsm("ac", "--alphabet", "ab"), "c"),
    Case("fsm-alphabet-repeated", fsm("a", "--alphabet", "aa"), "alphabet"),
    Case("fsm-alphabet-empty", fsm("a", "--alphabet", ""), "alphabet"),
    Case("fsm-alphabet-space", fsm("a", "--alphabet", "a b"), "alphabet"),
    Case("fsm-max-len-huge", fsm("(a|b)*", "--alphabet", "ab", "--max-len", "100000"),
         "--max-len"),
    Case("fsm-max-len-negative", fsm("a", "--alphabet", "ab", "--max-len", "-1"), "--max-len"),
    Case("fsm-max-states-0", fsm("a", "--alphabet", "ab", "--max-states", "0"), "--max-states"),
    Case("fsm-state-cap", fsm("(a|b)*a(a|b)(a|b)", "--alphabet", "ab", "--max-states", "3"),
         "--max-states"),
    Case("fsm-two-sources", fsm("a", "--alphabet", "ab", "--random", "3"), "exactly one"),
    Case("fsm-no-source", fsm(), "exactly one"),
    Case("fsm-isymbols-without-att", lambda e: ["fsm", "a", "--alphabet", "ab", "--isymbols",
                                                e.file("s.txt", "a 1\n")], "--isymbols"),
    Case("fsm-random-0", fsm("--random", "0", "--alphabet", "ab"), "--random"),
    Case("fsm-random-without-alphabet", fsm("--random", "3"), "--alphabet"),
    Case("fsm-bad-experiment-toml", lambda e: ["fsm", e.file("bad.toml", "[data\n")],
         "malformed TOML"),
    # -- fsm: DFA tables and AT&T files
    Case("fsm-dfa-missing", lambda e: ["fsm", "--dfa", e.tmp / "none.toml"], "none.toml"),
    Case("fsm-dfa-folder", lambda e: ["fsm", "--dfa", e.tmp], "directory"),
    Case("fsm-dfa-bad-toml", fsm_file("--dfa", "transitions = [[0,"), "malformed TOML"),
    Case("fsm-dfa-not-utf8", fsm_file("--dfa", b"\xff\xfe\x00"), "cannot read"),
    Case("fsm-dfa-unknown-target", fsm_file("--dfa", DFA_TABLE.replace('b = "q0"', 'b = "q9"')),
         "lang.txt"),
    Case("fsm-dfa-unknown-start", fsm_file("--dfa", DFA_TABLE.replace('start = "q0"',
                                                                      'start = "q7"')), "q7"),
    Case("fsm-dfa-both-accepting-and-outputs",
         fsm_file("--dfa", 'outputs = { q0 = 0, q1 = 1 }\n' + DFA_TABLE), "outputs"),
    Case("fsm-dfa-symbol-outside-alphabet", fsm_file("--dfa", DFA_TABLE, "--alphabet", "ac"),
         "lang.txt"),
    Case("fsm-dfa-unknown-field", fsm_file("--dfa", "colour = 3\n"), "invalid DFA table"),
    Case("fsm-att-garbage", fsm_file("--att", "0 1 a b c d e\n"), "fields"),
    Case("fsm-att-empty", fsm_file("--att", ""), "empty"),
    Case("fsm-att-bad-state", fsm_file("--att", "zero 1 a\n1\n"), "lang.txt"),
    Case("fsm-att-not-utf8", fsm_file("--att", b"0 1 \xff\n1\n"), "lang.txt"),
    Case("fsm-att-missing", lambda e: ["fsm", "--att", e.tmp / "none.att"], "none.att"),
    # -- audit-determinism
    Case("audit-unknown-experiment", lambda e: ["audit-determinism", "tomita9", "--results-dir",
                                                e.fresh], "did you mean"),
    Case("audit-set-typo", audit("--set", "model.d_modle=8"), "did you mean d_model"),
    Case("audit-bad-device", audit("--device", "tpu"), "tpu"),
    Case("audit-runs-0", audit("--runs", "0"), "--runs"),
    Case("audit-max-steps-0", audit("--max-steps", "0"), "--max-steps"),
    Case("audit-results-dir-under-a-file",
         lambda e: ["audit-determinism", e.toml, "--results-dir", e.file("f", "x") / "r",
                    "--device", "cpu"], "results folder"),
    # -- messages that name the option typed and the actual problem
    Case("sweep-grid-unknown-key",
         lambda e: ["sweep", e.toml, "--grid", "train.lrr=0.1,0.2", "--results-dir", e.fresh],
         "unknown key 'train.lrr' in --grid"),
    Case("sweep-seeds-backwards",
         lambda e: ["sweep", e.toml, "--seeds", "5-2", "--results-dir", e.fresh],
         "the range 5-2 runs backwards; write 2-5"),
    Case("ls-field-unknown-key", lambda e: ["ls", "--field", "foo", "--results-dir", e.root],
         "unknown key 'foo' in --field"),
    Case("show-link-loop", lambda e: ["show", _loop(e.tmp / "loop"), "--results-dir", e.root],
         "symbolic link that loops"),
    Case("report-results-dir-missing", lambda e: ["report", "--results-dir", e.fresh],
         "does not exist"),
    Case("fsm-alphabet-with-operator", fsm("a", "--alphabet", "a*"), "invalid --alphabet"),
    Case("fsm-alphabet-combining-mark", fsm("a", "--alphabet", "a\u0301"), "combining mark"),
    Case("fsm-att-epsilon-only", fsm_file("--att", "0 1 <eps>\n1\n"), "--alphabet"),
    Case("fsm-dfa-two-field-row",
         fsm_file("--dfa", 'states = ["q0"]\nstart = "q0"\naccepting = ["q0"]\n'
                           'transitions = [["q0", "a"]]\n'), "row 1"),
    Case("fsm-dfa-moore-negative-output",
         fsm_file("--dfa", 'states = ["q0"]\nstart = "q0"\noutputs = { q0 = -1 }\n'
                           'transitions = [["q0", "a", "q0"]]\n'), "output -1 is negative"),
    Case("fsm-state-cap-proved-before-building", fsm("a{100000}", "--alphabet", "ab"),
         "at least 100,001 states"),
    Case("set-boolean-as-number", train("--set", "data.n_train=true"),
         "n_train = true is a boolean"),
    Case("train-toml-boolean-as-number",
         train_toml('[data]\nregex = "a*"\nalphabet = "ab"\nn_train = true\n'),
         "n_train = true is a boolean"),
    # -- labels
    Case("tag-bad-key", on_run("tag", ".x=1"), "tag key '.x' cannot be used"),
    Case("tag-no-equals", on_run("tag", "paper"), "expects key=value"),
    Case("tag-unknown-run", lambda e: ["tag", "nosuchrun", "a=1", "--results-dir", e.root],
         "no run"),
    Case("tag-value-two-lines", on_run("tag", "a=x\ny"), "one printable line"),
    Case("tag-run-being-trained",
         lambda e: ["tag", _held_by_another_process(e.folders[0]), "a=1", "--results-dir",
                    e.root], "being written by process"),
    Case("train-tag-bad-key", train("--tag", "-x=1"), "tag key '-x' cannot be used"),
    Case("ls-tag-no-equals", lambda e: ["ls", "--tag", "paper", "--results-dir", e.root],
         "--tag expects key=value"),
    # -- fault findings: links out of a run folder, identifiers in run.json, capture files
    Case("plot-plots-folder-is-a-link",
         lambda e: ["plot", _link(e.folders[0] / "plots", _folder(e.tmp / "outside")),
                    "--results-dir", e.root], "symbolic link"),
    Case("resume-lock-is-a-link-to-nowhere",
         lambda e: ["resume", _interrupted(_link(e.folders[0] / ".lock", e.tmp / "nowhere")),
                    "--results-dir", e.root, "--device", "cpu"], "symbolic link"),
    Case("resume-checkpoints-folder-is-a-link",
         lambda e: ["resume", _interrupted(_link(e.folders[0] / "checkpoints",
                                                 _folder(e.tmp / "ckpts"))),
                    "--results-dir", e.root, "--device", "cpu"], "symbolic link"),
    Case("resume-run-id-with-a-path",
         lambda e: ["resume", _record_field(e.folders[0], run_id="../../x"), "--epochs", "3",
                    "--results-dir", e.root, "--device", "cpu"], "run_id"),
    Case("show-parent-run-with-a-path",
         lambda e: ["show", _record_field(e.folders[0], parent_run="a/../../b"),
                    "--results-dir", e.root], "parent_run"),
    Case("plot-capture-not-weights-only",
         lambda e: ["plot", _capture(e.folders[0], {"epoch": datetime.date(2020, 1, 1)}),
                    "--results-dir", e.root], "datetime.date"),
    Case("plot-capture-garbage",
         lambda e: ["plot", _capture(e.folders[0], GARBAGE), "--results-dir", e.root],
         "epoch_0001.pt"),
]  # fmt: skip


def _loop(path: Path) -> Path:
    """A symbolic link pointing to itself."""
    path.symlink_to(path)
    return path


def _link(path: Path, target: Path) -> Path:
    """Replace `path` (in a run folder) by a symbolic link to `target`; the run folder."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)
    return path.parent


def _record_field(folder: Path, **fields: str) -> Path:
    """Set fields of run.json as a hand edit would; the folder."""
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, **fields}))
    return folder


def _capture(folder: Path, content: object) -> Path:
    """Write captures/epoch_0001.pt: raw bytes, or `content` saved by torch.save; the folder."""
    path = folder / "captures" / "epoch_0001.pt"
    path.parent.mkdir(exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return folder


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _remove(path: Path) -> Path:
    """Remove a file or folder of a run; the run folder."""
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path.parent


def _only(folder: Path, name: str) -> Path:
    """Remove the `.prev.pt` copy of checkpoint `name`, so that the damaged one is all there is."""
    (folder / "checkpoints" / f"{name}.prev.pt").unlink(missing_ok=True)
    return folder


def _truncate_pt(folder: Path, name: str) -> Path:
    path = folder / "checkpoints" / f"{name}.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return folder


def _truncate(path: Path) -> Path:
    """Cut a JSON file in half; its run folder."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.parent


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


def _read_only(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o500)
    return path


def _interrupted(folder: Path, status: str = "interrupted", pid: int | None = None) -> Path:
    """Mark the run `status` in its run.json (a run killed mid-way); its folder."""
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "status": status, "pid": pid}))
    return folder


def _cut_history(folder: Path) -> Path:
    """Keep only the first line of history.jsonl: fewer than last.pt (and .prev) counted."""
    path = folder / "logs" / "history.jsonl"
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    return folder


_HOLDERS: list[subprocess.Popen] = []  # processes holding a run's lock, ended after each case


def _held_by_another_process(folder: Path) -> Path:
    """A running run whose `.lock` another live process holds (its pid in run.json); the folder."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(folder / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _HOLDERS.append(holder)
    assert holder.stdout.readline() == "held\n"
    return _interrupted(folder, "running", holder.pid)


def tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under `roots` with its size and mtime (folders: 0 and mtime)."""
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                size = 0 if path.is_dir() else st.st_size
                found[str(path)] = (size, st.st_mtime_ns)
    return found


@pytest.fixture
def env(trained, tmp_path: Path) -> Env:
    root = tmp_path / "results"
    shutil.copytree(trained.root, root)
    folders = [root / f.relative_to(trained.root) for f in trained.folders]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return Env(root, trained.toml, trained.run_ids, folders, scratch)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(case: Case, env: Env, tmp_path, cli):
    if case.skip:
        pytest.skip(case.skip)
    args = case.args(env)
    before = tree(tmp_path, env.toml.parent)
    try:
        result = cli(*args)
    finally:
        while _HOLDERS:
            holder = _HOLDERS.pop()
            holder.communicate("")
        for path in tmp_path.rglob("*"):  # undo chmod so that pytest can clean up
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    others = [
        line
        for line in result.stderr.splitlines()
        if not line.startswith(("error:", "warning: ", "  "))
    ]
    assert others == [], result.stderr
    assert case.fragment in errors[0], result.stderr
    assert result.exit_code == case.code, result.stderr
    assert result.stdout == ""
    after = tree(tmp_path, env.toml.parent)
    assert after == before
    assert not env.fresh.exists()


def test_the_catalogue_covers_every_command_with_at_least_60_cases():
    commands = {c.id.split("-")[0] for c in CASES}
    assert {"train", "set", "resume", "eval", "show", "ls", "experiments", "fsm", "audit"} <= (
        commands
    )
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("show", "registry.sqlite"),
        ("show", "fsm.json"),
        ("show", "logs/history.jsonl"),
        ("eval", "registry.sqlite"),
        ("eval", "fsm.json"),
        ("ls", "registry.sqlite"),
    ],
)
def test_damage_a_command_does_not_depend_on_is_left_alone(cli, env, tmp_path, command, name):
    path = env.root / name if name == "registry.sqlite" else env.folders[0] / name
    path.write_bytes(GARBAGE)
    before = tree(tmp_path)
    args = [] if command == "ls" else [env.run_ids[0]]
    extra = ["--device", "cpu"] if command == "eval" else []
    result = cli(command, *args, "--results-dir", env.root, *extra)
    assert result.exit_code == 0, result.output
    assert env.run_ids[0] in result.stdout
    assert [line for line in result.stderr.splitlines() if not line.startswith("warning: ")] == []
    assert tree(tmp_path) == before


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path):
    """`fsmrun report --json | head -c 10`: stdout's reader is gone before the command
    writes. It ends quietly, with the status a command ended by SIGPIPE has, no error line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from fsmrun.cli import main; main()", "report", "--json",
         "--results-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the reader goes away at once
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and b"error" not in err and b"Traceback" not in err, err


@pytest.mark.parametrize(
    "args",
    [["ls"], ["ls", "--json"], ["report", "--json"], ["report"], ["show", "RUN"]],
    ids=["ls", "ls-json", "report-json", "report", "show"],
)
def test_a_read_only_command_ends_when_done_with_all_it_printed(env, args):
    """The console script ends a read-only command's process once it has written its
    output, without the interpreter's teardown (atexit hooks do not run): exit status 0,
    and every line there."""
    args = [env.run_ids[0] if a == "RUN" else a for a in args]
    code = (
        "import atexit, sys\natexit.register(lambda: sys.stderr.write('TEARDOWN'))\n"
        "from fsmrun.cli import main\nmain()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--results-dir", str(env.root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and "TEARDOWN" not in proc.stderr, proc.stderr
    experiment = env.run_ids[0].rsplit("-", 2)[0]
    if args[:2] == ["ls", "--json"]:
        listed = [json.loads(line)["run_id"] for line in proc.stdout.splitlines()]
        assert sorted(listed) == sorted(env.run_ids)
    elif args[:2] == ["report", "--json"]:
        assert json.loads(proc.stdout)["rows"][0]["n_runs"] == len(env.run_ids)
    elif args[0] == "report":
        assert experiment in proc.stdout
    else:
        assert all(run_id in proc.stdout for run_id in env.run_ids[: 1 if args[0] == "show" else 2])


def test_the_other_commands_end_with_the_usual_teardown():
    """The other commands (here: `experiments`) end as Python does, teardown and all."""
    code = (
        "import atexit, sys\natexit.register(lambda: sys.stderr.write('TEARDOWN'))\n"
        "from fsmrun.cli import main\nmain()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "experiments"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "TEARDOWN" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args", [["ls"], ["report"], ["show", "RUN"]], ids=["ls", "report", "show"]
)
def test_a_reader_that_stops_reading_a_table_ends_the_command_quietly(env, args):
    """`fsmrun ls | head -2`: a table's reader gone ends the command as for JSON (rich on
    its own exits 1): status 141, no error line."""
    args = [env.run_ids[0] if a == "RUN" else a for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from fsmrun.cli import main; main()", *args,
         "--results-dir", str(env.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the reader goes away at once
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and b"error" not in err and b"Traceback" not in err, err
