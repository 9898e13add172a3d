"""Automaton extraction with AALpy's KV learner from any black box that labels every prefix of
a string in one pass (a trained model, or a DFA in tests). No torch here.

Why KV (Kearns-Vazirani with Rivest-Schapire counterexample processing) rather than L* or
L#: our counterexamples come from long strings (up to the OOD maximum length, 100 or more),
and KV spends O(log m) membership queries on a counterexample of length m, where L* adds all
its suffixes as table columns (queries grow with m times the number of states). KV's
discrimination tree also asks no query twice by construction. L# needs as few queries but
builds an observation tree of every trace, large with 100-symbol counterexamples.

Batching: AALpy asks one word at a time, but a model labels every prefix of a string in one
forward pass. `PrefixOracle` keeps the label of every prefix seen; all words up to a short
length are labelled in a few batches at the start (the learner's queries are mostly short),
the equivalence words of a round in one call, and a miss costs one string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from fsmrun.lang.fsm import DFA, minimal_dfa

__all__ = [
    "ALGORITHM",
    "ExtractionBudget",
    "ExtractionResult",
    "PrefixOracle",
    "Predictor",
    "extract_machine",
]

ALGORITHM = "kv"
# Labels every prefix of each string: result[i][t] is the label after the first t symbols
# (t = 0..len), an int class (membership: 1 accepted).
Predictor = Callable[[Sequence[str]], list[np.ndarray]]
PRELABEL_MAX_WORDS = 4096  # all words up to the longest length with at most this many words


class _Stop(Exception):
    """A budget ran out (reason: state_cap, query_budget or time_budget)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExtractionBudget:
    """Bounds on one extraction; reaching one ends it with that status (not an error)."""

    max_states: int = 100  # modular_arithmetic's target alone has 51
    max_model_strings: int = 200_000  # strings the model is asked to label, all rounds
    max_seconds: float = 120.0


@dataclass
class PrefixOracle:
    """Labels of prefixes, computed by `predict` in batches and kept for the whole extraction.

    `model_strings` counts the strings the model labelled (a string labels all its prefixes),
    `model_calls` the calls (batches of strings) made to `predict`.
    """

    predict: Predictor
    budget: ExtractionBudget
    started: float = field(default_factory=time.monotonic)
    labels: dict[str, int] = field(default_factory=dict)
    model_strings: int = 0
    model_calls: int = 0

    def label_all(self, words: Sequence[str], *, keep: bool = True) -> list[np.ndarray]:
        """Labels at every prefix of each word, asking the model for all of them in one call.
        With `keep`, every prefix label joins the cache (for the learner's later queries)."""
        self._charge(len(words))
        out = self.predict(words)
        if keep:
            for word, labels in zip(words, out, strict=True):
                for t in range(len(word) + 1):
                    self.labels[word[:t]] = int(labels[t])
        return out

    def label(self, word: str) -> int:
        """The label of one word: from the cache, else one model string."""
        found = self.labels.get(word)
        if found is None:
            self.label_all([word])
            found = self.labels[word]
        return found

    def _charge(self, n: int) -> None:
        if time.monotonic() - self.started > self.budget.max_seconds:
            raise _Stop("time_budget")
        if self.model_strings + n > self.budget.max_model_strings:
            raise _Stop("query_budget")
        self.model_strings += n
        self.model_calls += 1


def all_words(alphabet: Sequence[str], max_words: int = PRELABEL_MAX_WORDS) -> list[str]:
    """Every word of the longest length L with |alphabet|^L <= max_words (their prefixes
    cover all shorter words)."""
    length = 0
    while len(alphabet) ** (length + 1) <= max_words:
        length += 1
    return ["".join(w) for w in product(alphabet, repeat=length)]


@dataclass
class ExtractionResult:
    """The extracted machine (minimal, canonical) and how the extraction went."""

    machine: DFA | None  # None only when a budget ran out before any hypothesis
    status: str  # converged, state_cap, query_budget or time_budget
    rounds: int
    membership_queries: int  # words the learner asked (cache hits included)
    model_strings: int
    model_calls: int
    equivalence_words: int  # words of the last equivalence check
    fidelity: float  # fraction of the last equivalence check's prefixes labelled alike
    seconds: float


def _hypothesis_dfa(hypothesis: object, target: DFA, moore: bool) -> DFA:
    """An AALpy Dfa/MooreMachine as an fsmrun DFA (minimal, canonical numbering)."""
    states = list(hypothesis.states)  # type: ignore[attr-defined]
    index = {id(s): i for i, s in enumerate(states)}
    table = np.array(
        [[index[id(s.transitions[a])] for a in target.alphabet] for s in states], dtype=np.int64
    )
    start = index[id(hypothesis.initial_state)]  # type: ignore[attr-defined]
    if moore:
        outputs = np.array([int(s.output) for s in states], dtype=np.int64)
        return minimal_dfa(
            target.alphabet,
            table,
            outputs,
            start,
            num_outputs=target.num_outputs,
            output_names=target.output_names,
        )
    outputs = np.array([bool(s.is_accepting) for s in states], dtype=bool)
    return minimal_dfa(target.alphabet, table, outputs, start)


def _run_table(machine: DFA, words: Sequence[str]) -> list[np.ndarray]:
    """Output after every prefix of each word, stepping all words at once (numpy)."""
    if not words:
        return []
    index = {s: i for i, s in enumerate(machine.alphabet)}
    lengths = np.array([len(w) for w in words])
    width = int(lengths.max()) if len(words) else 0
    ids = np.zeros((len(words), width), dtype=np.int64)
    for r, w in enumerate(words):
        ids[r, : len(w)] = [index[c] for c in w]
    states = np.empty((len(words), width + 1), dtype=np.int64)
    states[:, 0] = machine.start
    for t in range(width):
        states[:, t + 1] = machine.transitions[states[:, t], ids[:, t]]
    outputs = machine.outputs[states]
    return [outputs[r, : lengths[r] + 1] for r in range(len(words))]


def extract_machine(
    predict: Predictor,
    target: DFA,
    *,
    moore: bool,
    fixed_words: Sequence[str],
    max_length: int,
    rng: np.random.Generator,
    budget: ExtractionBudget | None = None,
    random_words: int = 2000,
    walks_per_state: int = 20,
) -> ExtractionResult:
    """Learn a DFA (membership) or Moore machine (`moore`) from `predict` with AALpy's KV.

    Equivalence queries compare the hypothesis with the model on every prefix of: the
    `fixed_words` (the run's split strings), `random_words` uniform random words of length
    0..`max_length`, and `walks_per_state` random walks from each hypothesis state's access
    word up to `max_length` (redrawn each round, so rarely visited states are tested). The
    shortest disagreeing prefix found is the counterexample. `target` gives the alphabet and
    output names only; the model alone answers every query.
    """
    from aalpy.base import SUL, Oracle
    from aalpy.learning_algs import run_KV

    budget = budget or ExtractionBudget()
    oracle = PrefixOracle(predict, budget)
    alphabet = list(target.alphabet)
    to_output = (lambda x: int(x)) if moore else (lambda x: bool(x))
    state: dict[str, object] = {"hypothesis": None, "rounds": 0, "words": 0, "fidelity": 0.0}

    class ModelSUL(SUL):
        """Answers whole queries from the prefix cache; `step` for oracles that walk."""

        def __init__(self) -> None:
            super().__init__()
            self.word = ""

        def query(self, word: tuple) -> list:
            self.num_queries += 1
            text = "".join(word)
            if not text:
                return [to_output(oracle.label(""))]
            oracle.label(text)  # one model string labels every prefix
            return [to_output(oracle.labels[text[: t + 1]]) for t in range(len(text))]

        def pre(self) -> None:
            self.word = ""

        def post(self) -> None:
            pass

        def step(self, letter: object) -> object:
            if letter is not None:
                self.word += str(letter)
            return to_output(oracle.label(self.word))

    eq_words: list[str] = []  # the fixed words of every equivalence check
    model_eq: list[np.ndarray] = []  # the model's labels of their prefixes

    class BatchEqOracle(Oracle):
        def find_cex(self, hypothesis: object) -> tuple | None:
            machine = _hypothesis_dfa(hypothesis, target, moore)
            state["hypothesis"], state["rounds"] = machine, int(state["rounds"]) + 1
            if machine.num_states > budget.max_states:
                raise _Stop("state_cap")
            walks = _walks(machine, rng, walks_per_state, max_length)
            words = eq_words + walks
            model = model_eq + oracle.label_all(walks, keep=False)
            ours = _run_table(machine, words)
            best: str | None = None
            agree = total = 0
            for word, m, h in zip(words, model, ours, strict=True):
                same = m == h
                agree += int(same.sum())
                total += len(same)
                if not same.all():
                    first = int(np.flatnonzero(~same)[0])
                    if best is None or first < len(best):
                        best = word[:first]
            state["words"], state["fidelity"] = len(words), agree / max(total, 1)
            self.num_queries += len(words)
            if best is None:
                return None
            oracle.label_all([best])  # the learner will ask about its prefixes
            return tuple(best)

    started = time.monotonic()
    sul = ModelSUL()
    eq = BatchEqOracle(alphabet, sul)
    status = "converged"
    try:
        oracle.label_all(all_words(alphabet))
        fixed = list(dict.fromkeys(fixed_words))
        lengths = rng.integers(0, max_length + 1, size=random_words)
        randoms = ["".join(rng.choice(alphabet, size=int(n))) for n in lengths]
        eq_words.extend(dict.fromkeys(fixed + randoms))
        model_eq.extend(oracle.label_all(eq_words, keep=False))  # one batch for every round
        hypothesis = run_KV(
            alphabet, sul, eq, "moore" if moore else "dfa", cex_processing="rs", print_level=0
        )
        machine = _hypothesis_dfa(hypothesis, target, moore)
    except _Stop as stop:
        status, machine = stop.reason, state["hypothesis"]  # type: ignore[assignment]
    return ExtractionResult(
        machine=machine,  # type: ignore[arg-type]
        status=status,
        rounds=int(state["rounds"]),  # type: ignore[arg-type]
        membership_queries=sul.num_queries,
        model_strings=oracle.model_strings,
        model_calls=oracle.model_calls,
        equivalence_words=int(state["words"]),  # type: ignore[arg-type]
        fidelity=float(state["fidelity"]),  # type: ignore[arg-type]
        seconds=time.monotonic() - started,
    )


def _walks(machine: DFA, rng: np.random.Generator, per_state: int, max_length: int) -> list[str]:
    """For each state, `per_state` words: its shortest access word, then random symbols up to
    a uniform random total length in len(access)..max_length."""
    access = _access_words(machine)
    words = []
    for prefix in access:
        for _ in range(per_state):
            n = int(rng.integers(len(prefix), max(max_length, len(prefix)) + 1)) - len(prefix)
            words.append(prefix + "".join(rng.choice(list(machine.alphabet), size=n)))
    return words


def _access_words(machine: DFA) -> list[str]:
    """The shortest word reaching each reachable state (breadth-first, alphabet order)."""
    found = {machine.start: ""}
    frontier = [machine.start]
    while frontier:
        nxt = []
        for q in frontier:
            for i, symbol in enumerate(machine.alphabet):
                t = int(machine.transitions[q, i])
                if t not in found:
                    found[t] = found[q] + symbol
                    nxt.append(t)
        frontier = nxt
    return list(found.values())
