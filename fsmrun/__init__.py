"""fsmrun: train small sequence models on regular languages, reproducibly.

The names a notebook needs, loaded on first use (`import fsmrun` itself imports neither torch
nor any stage):

    exp = fsmrun.load_experiment("regex_a")
    result = fsmrun.train_one_experiment(exp, device="cpu")
    report = fsmrun.evaluate_run(result.run_dir)
    dfa = fsmrun.compile_regex("(ab)*", "ab")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from fsmrun._version import __version__

# Public name -> the module that defines it (imported when the name is first used).
_PUBLIC = {
    # experiments and their configs
    "load_experiment": "fsmrun.experiments",
    "list_experiments": "fsmrun.experiments",
    "ExperimentConfig": "fsmrun.schemas.config",
    "apply_overrides": "fsmrun.base.overrides",
    # languages
    "DFA": "fsmrun.lang.fsm",
    "compile_regex": "fsmrun.lang.fsm",
    "build_dfa": "fsmrun.lang.build",
    "generate_corpus": "fsmrun.data.sampling",
    # training, resuming, evaluating
    "train_one_experiment": "fsmrun.train.loop",
    "resume_run": "fsmrun.train.loop",
    "RunResult": "fsmrun.train.loop",
    "SessionControls": "fsmrun.train.session",
    "Hooks": "fsmrun.train.hooks",
    "evaluate_run": "fsmrun.train.evaluate",
    # runs on disk
    "RunFolder": "fsmrun.runs.run_folder",
    "RunIndex": "fsmrun.runs.index",
    "resolve_run": "fsmrun.runs.layout",
    "default_results_root": "fsmrun.runs.layout",
    # errors a caller catches
    "FsmrunError": "fsmrun.base.errors",
    "UserError": "fsmrun.base.errors",
    "RegexError": "fsmrun.lang.fsm",
}

__all__ = [
    "__version__",
    "load_experiment",
    "list_experiments",
    "ExperimentConfig",
    "apply_overrides",
    "DFA",
    "compile_regex",
    "build_dfa",
    "generate_corpus",
    "train_one_experiment",
    "resume_run",
    "RunResult",
    "SessionControls",
    "Hooks",
    "evaluate_run",
    "RunFolder",
    "RunIndex",
    "resolve_run",
    "default_results_root",
    "FsmrunError",
    "UserError",
    "RegexError",
]


def __getattr__(name: str) -> Any:
    """Import the defining module of a public name on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and editors; never executed
    from fsmrun.base.errors import FsmrunError, UserError
    from fsmrun.base.overrides import apply_overrides
    from fsmrun.data.sampling import generate_corpus
    from fsmrun.experiments import list_experiments, load_experiment
    from fsmrun.lang.build import build_dfa
    from fsmrun.lang.fsm import DFA, RegexError, compile_regex
    from fsmrun.runs.index import RunIndex
    from fsmrun.runs.layout import default_results_root, resolve_run
    from fsmrun.runs.run_folder import RunFolder
    from fsmrun.schemas.config import ExperimentConfig
    from fsmrun.train.evaluate import evaluate_run
    from fsmrun.train.hooks import Hooks
    from fsmrun.train.loop import RunResult, resume_run, train_one_experiment
    from fsmrun.train.session import SessionControls
