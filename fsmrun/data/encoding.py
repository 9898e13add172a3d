"""Vocabulary and the encoding of strings into targets and masks: a split is encoded once into
padded tensors on the device (`SplitData`), whose batches are row gathers trimmed to the
longest string in them (`batching.py` chooses the rows)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from fsmrun.data.sampling import Corpus
from fsmrun.lang.fsm import DFA

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
SPECIAL_NAMES = ("<pad>", "<bos>", "<eos>")

Device = str | torch.device


class Vocab:
    """PAD=0, BOS=1, EOS=2, then alphabet symbol i as token 3 + i (one character a symbol)."""

    def __init__(self, alphabet: str | Sequence[str]) -> None:
        symbols = tuple(alphabet)
        if any(len(s) != 1 for s in symbols) or len(set(symbols)) != len(symbols):
            raise ValueError(f"alphabet must be distinct single characters, got {symbols!r}")
        self.symbols: tuple[str, ...] = symbols
        self._token = {s: NUM_SPECIAL + i for i, s in enumerate(symbols)}

    @property
    def size(self) -> int:
        return NUM_SPECIAL + len(self.symbols)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Display name of every token id: `<pad>`, `<bos>`, `<eos>`, then the symbols."""
        return SPECIAL_NAMES + self.symbols

    def encode(self, s: str) -> list[int]:
        """Symbol tokens of `s` (no BOS/EOS); ValueError for a character outside the alphabet."""
        try:
            return [self._token[c] for c in s]
        except KeyError as err:
            raise ValueError(
                f"symbol {err.args[0]!r} is not in the alphabet {self.symbols}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The string spelled by `ids`, skipping PAD/BOS/EOS."""
        out = []
        for tok in ids:
            tok = int(tok)
            if tok >= NUM_SPECIAL:
                out.append(self.symbols[tok - NUM_SPECIAL])
            elif tok < 0:
                raise ValueError(f"negative token id {tok}")
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Vocab({''.join(self.symbols)!r})"


@dataclass(frozen=True)
class Batch:
    """One batch, all tensors on one device. Position t has read the prefix s1..st."""

    input_ids_bxt: torch.Tensor  # long [B, T]: BOS s1..sn, then PAD
    target_next_bxt: torch.Tensor  # long [B, T]: s(t+1), EOS at t = n, PAD after
    target_class_bxt: torch.Tensor  # long [B, T]: class of the prefix s1..st (membership 0/1,
    # or the output of its state with task final_output), 0 at pads
    target_state_bxt: torch.Tensor  # long [B, T]: DFA state after s1..st, 0 at pads
    loss_mask_bxt: torch.Tensor  # bool [B, T]: True at real positions t = 0..n
    lengths_b: torch.Tensor  # long [B]: string length n
    labels_b: torch.Tensor  # long [B]: 1 if the whole string is accepted
    # bool [B, T, V]: legal next tokens after s1..st (legal_next_table at its state); needed
    # only by the legal-next head (task char_prediction)
    target_legal_bxtxv: torch.Tensor | None = None

    def to(self, device: Device) -> Batch:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        return replace(self, **moved)


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split encoded on one device, padded to (max length + 1) positions (N strings)."""

    name: str
    input_ids_nxt: torch.Tensor
    target_next_nxt: torch.Tensor
    target_class_nxt: torch.Tensor
    target_state_nxt: torch.Tensor
    target_legal_nxtxv: torch.Tensor
    loss_mask_nxt: torch.Tensor
    lengths_n: torch.Tensor
    labels_n: torch.Tensor
    lengths_np: np.ndarray  # host copy: batch widths come from here, never from the device
    labels_np: np.ndarray

    @property
    def num_strings(self) -> int:
        return len(self.lengths_np)

    @property
    def max_length(self) -> int:
        return int(self.lengths_np.max()) if self.num_strings else 0

    @property
    def device(self) -> torch.device:
        return self.input_ids_nxt.device

    def batch(self, index: np.ndarray) -> Batch:
        """Rows `index` (int array), trimmed to T = max(lengths[index]) + 1."""
        index = np.asarray(index, dtype=np.int64)
        return self._gather(
            index_to_device(index, self.device), batch_width(self.lengths_np, index)
        )

    def _gather(self, rows_b: torch.Tensor, width: int) -> Batch:
        # rows_b already lives on the device and width is a host int: no host-device sync.
        def take(t_nxt: torch.Tensor) -> torch.Tensor:
            return t_nxt[:, :width].index_select(0, rows_b)

        return Batch(
            input_ids_bxt=take(self.input_ids_nxt),
            target_next_bxt=take(self.target_next_nxt),
            target_class_bxt=take(self.target_class_nxt),
            target_state_bxt=take(self.target_state_nxt),
            target_legal_bxtxv=take(self.target_legal_nxtxv),
            loss_mask_bxt=take(self.loss_mask_nxt),
            lengths_b=self.lengths_n.index_select(0, rows_b),
            labels_b=self.labels_n.index_select(0, rows_b),
        )


def batch_width(lengths_np: np.ndarray, index: np.ndarray) -> int:
    return int(lengths_np[index].max()) + 1 if len(index) else 1


def index_to_device(index: np.ndarray, device: torch.device) -> torch.Tensor:
    index_t = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
    if device.type == "cuda":
        # Pinned + non_blocking: the copy is queued without waiting for the stream.
        return index_t.pin_memory().to(device, non_blocking=True)
    return index_t.to(device)


def _input_ids(strings: Sequence[str], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Input ids time-major [T, N] (BOS s1..sn, then PAD; T = max length + 1) and lengths [N].

    Vectorised: all strings are joined once and their code points scattered into place.
    """
    lengths_n = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    max_len = int(lengths_n.max()) if len(strings) else 0
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").astype(np.int64)
    # code point -> token lookup, -1 for characters outside the alphabet
    top = max((ord(c) for c in vocab.symbols), default=0)
    token_of = np.full(top + 2, -1, dtype=np.int64)
    token_of[[ord(c) for c in vocab.symbols]] = np.arange(len(vocab.symbols)) + NUM_SPECIAL
    tokens = token_of[np.minimum(codes, top + 1)]
    if len(tokens) and tokens.min() < 0:
        bad = chr(int(codes[np.flatnonzero(tokens < 0)[0]]))
        raise ValueError(f"symbol {bad!r} is not in the alphabet {vocab.symbols}")
    input_ids_txn = np.zeros((max_len + 1, len(strings)), dtype=np.int64)  # PAD = 0
    input_ids_txn[0] = BOS
    rows = np.repeat(np.arange(len(strings)), lengths_n)
    starts = np.cumsum(lengths_n) - lengths_n
    cols = np.arange(len(codes)) - np.repeat(starts, lengths_n)
    input_ids_txn[cols + 1, rows] = tokens
    return input_ids_txn, lengths_n


def encode_split(
    name: str,
    strings: Sequence[str],
    labels: Sequence[int] | np.ndarray | None,
    dfa: DFA,
    vocab: Vocab,
    device: Device = "cpu",
    task: str = "membership",
) -> SplitData:
    """Encode `strings` with every target and mask per DESIGN.md onto `device`.

    The class target is prefix membership, or with `task` final_output the output class of
    the prefix's state; the legal-next target is `legal_next_table` at the prefix's state.
    `labels` (the corpus memberships) are checked against the DFA: a mismatch is a bug
    upstream and raises ValueError. Pass None to take the labels from the DFA.
    """
    if tuple(dfa.alphabet) != vocab.symbols:
        raise ValueError(f"vocab {vocab!r} does not match the DFA alphabet {dfa.alphabet}")
    # Work time-major ([T, N]) so each step of the DFA reads and writes contiguous rows.
    input_ids_txn, lengths_n = _input_ids(strings, vocab)
    width, num = input_ids_txn.shape
    strings_n = np.arange(num)
    mask_txn = np.arange(width)[:, None] <= lengths_n[None, :]

    target_next_txn = np.zeros_like(input_ids_txn)
    target_next_txn[:-1] = input_ids_txn[1:]
    target_next_txn[lengths_n, strings_n] = EOS

    # Transitions over tokens, flattened: PAD leads to state 0, so pad positions get state 0.
    step_sxv = np.zeros((dfa.num_states, vocab.size), dtype=np.int64)
    step_sxv[:, NUM_SPECIAL:] = dfa.transitions
    step_flat = step_sxv.reshape(-1)
    state_txn = np.empty_like(input_ids_txn)
    state_txn[0] = dfa.start
    for t in range(1, width):
        state_txn[t] = step_flat[state_txn[t - 1] * vocab.size + input_ids_txn[t]]
    accepted_txn = dfa.accepting[state_txn] & mask_txn
    dfa_labels_n = accepted_txn[lengths_n, strings_n].astype(np.int64)
    if task == "final_output":
        class_txn = np.where(mask_txn, dfa.outputs[state_txn], 0)
    else:
        class_txn = accepted_txn.astype(np.int64)
    legal_txnxv = _legal_next_np(dfa, vocab)[state_txn] & mask_txn[:, :, None]

    if labels is None:
        labels_n = dfa_labels_n
    else:
        labels_n = np.asarray(labels).astype(np.int64).reshape(-1)
        if labels_n.shape != (num,):
            raise ValueError(f"split {name!r}: {len(labels_n)} labels for {num} strings")
        wrong = np.flatnonzero(labels_n != dfa_labels_n)
        if len(wrong):
            i = int(wrong[0])
            raise ValueError(
                f"split {name!r}: {len(wrong)} labels disagree with the DFA, first "
                f"{strings[i]!r} labelled {labels_n[i]} but the DFA says {dfa_labels_n[i]}"
            )

    def to_nxt(a_txn: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a_txn).to(device).t().contiguous()

    return SplitData(
        name=name,
        input_ids_nxt=to_nxt(input_ids_txn),
        target_next_nxt=to_nxt(target_next_txn),
        target_class_nxt=to_nxt(class_txn),
        target_state_nxt=to_nxt(state_txn),
        target_legal_nxtxv=torch.from_numpy(legal_txnxv).to(device).transpose(0, 1).contiguous(),
        loss_mask_nxt=to_nxt(mask_txn),
        lengths_n=torch.from_numpy(lengths_n).to(device),
        labels_n=torch.from_numpy(labels_n).to(device),
        lengths_np=lengths_n,
        labels_np=labels_n,
    )


def legal_next_table(dfa: DFA, vocab: Vocab, device: Device = "cpu") -> torch.Tensor:
    """bool [S, V]: legal[q, tok] = `tok` may follow a prefix that reaches state q.

    A symbol is legal when the state it leads to is live (acceptance still reachable); EOS
    when q accepts; PAD and BOS never.
    """
    return torch.from_numpy(_legal_next_np(dfa, vocab)).to(device)


def _legal_next_np(dfa: DFA, vocab: Vocab) -> np.ndarray:
    if tuple(dfa.alphabet) != vocab.symbols:
        raise ValueError(f"vocab {vocab!r} does not match the DFA alphabet {dfa.alphabet}")
    legal_sxv = np.zeros((dfa.num_states, vocab.size), dtype=bool)
    legal_sxv[:, EOS] = dfa.accepting
    legal_sxv[:, NUM_SPECIAL:] = dfa.live[dfa.transitions]
    return legal_sxv


def num_classes_of(dfa: DFA, task: str) -> int:
    """Width of the class head: the machine's outputs for final_output, else 2 (membership)."""
    return dfa.num_outputs if task == "final_output" else 2


@dataclass
class RunData:
    """Everything derived from the data config: automaton, vocabulary, encoded splits, and
    the task's head sizes (`num_classes`, `legal_next`: whether the legal-next head is used)."""

    dfa: DFA
    vocab: Vocab
    splits: dict[str, SplitData]
    legal_next_sxv: torch.Tensor
    corpus_hash: str
    task: str = "membership"

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.dfa, self.task)

    @property
    def legal_next(self) -> bool:
        return self.task == "char_prediction"


def encode_corpus(corpus: Corpus, dfa: DFA, device: Device, task: str = "membership") -> RunData:
    """Every split of `corpus` (test_ood when it has strings) encoded on `device` for `task`."""
    vocab = Vocab(dfa.alphabet)
    names = ["train", "val", "test"] + (["test_ood"] if corpus.num_strings("test_ood") else [])
    splits = {
        name: encode_split(
            name, corpus.strings(name), corpus.labels(name), dfa, vocab, device, task
        )
        for name in names
    }
    legal = legal_next_table(dfa, vocab).to(device)
    return RunData(dfa, vocab, splits, legal, corpus.fingerprint(), task)
