"""A labelled corpus: the strings and labels of the splits train, val, test and test_ood, with
a content fingerprint and a JSON form (how the corpus cache stores it)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from fsmrun.base.errors import UserError
from fsmrun.base.hashing import canonical_json, sha256_text

SPLITS = ("train", "val", "test", "test_ood")
CORPUS_JSON_FORMAT = "fsmrun-corpus-1"


class CorpusError(UserError):
    """The corpus asked for cannot be drawn from this language (message says how to fix it)."""


class Corpus:
    """The labelled strings of every split. `labels(split)` is a read-only numpy bool array."""

    def __init__(
        self, alphabet: str, splits: dict[str, tuple[Sequence[str], Sequence[bool] | np.ndarray]]
    ) -> None:
        self.alphabet = alphabet
        self._strings: dict[str, tuple[str, ...]] = {}
        self._labels: dict[str, np.ndarray] = {}
        for name in SPLITS:
            strings, labels = splits.get(name, ((), ()))
            labels_n = np.array(labels, dtype=bool).reshape(-1)
            if len(labels_n) != len(strings):
                raise ValueError(f"split {name!r}: {len(strings)} strings, {len(labels_n)} labels")
            labels_n.setflags(write=False)
            self._strings[name] = tuple(strings)
            self._labels[name] = labels_n
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)}; known: {', '.join(SPLITS)}")

    def _check(self, split: str) -> None:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")

    def strings(self, split: str) -> list[str]:
        """The strings of `split` in corpus order (empty for test_ood when n_test_ood = 0)."""
        self._check(split)
        return list(self._strings[split])

    def labels(self, split: str) -> np.ndarray:
        """Membership of each string of `split` (bool [N], read-only)."""
        self._check(split)
        return self._labels[split]

    def num_strings(self, split: str) -> int:
        self._check(split)
        return len(self._strings[split])

    def _doc(self) -> dict:
        return {
            "alphabet": self.alphabet,
            "splits": {
                name: {
                    "strings": list(self._strings[name]),
                    "labels": [int(x) for x in self._labels[name]],
                }
                for name in SPLITS
            },
        }

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical content: strings and labels of every split, in order."""
        return sha256_text(canonical_json(self._doc()))

    def to_json(self) -> str:
        doc = self._doc()
        doc["format"] = CORPUS_JSON_FORMAT
        doc["fingerprint"] = self.fingerprint()
        return canonical_json(doc)

    @classmethod
    def from_json(cls, text: str) -> Corpus:
        """Inverse of `to_json`; ValueError when the format or fingerprint does not match."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != CORPUS_JSON_FORMAT:
            raise ValueError("not an fsmrun corpus file")
        splits = {
            name: (list(part["strings"]), list(part["labels"]))
            for name, part in doc["splits"].items()
        }
        if not all(isinstance(s, str) for strings, _ in splits.values() for s in strings):
            raise ValueError("corpus strings must be strings")
        corpus = cls(doc["alphabet"], splits)
        if corpus.fingerprint() != doc.get("fingerprint"):
            raise ValueError("corpus fingerprint does not match its content")
        return corpus

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Corpus) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={self.num_strings(name)}" for name in SPLITS)
        return f"Corpus({sizes})"
