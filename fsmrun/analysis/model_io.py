"""A trained run opened for analysis: its config, DFA, corpus, encoded splits and the model
of one checkpoint, with the model as a batched prefix labeller (`Predictor`) and as a source of
per-layer hidden states. Refuses, with one line, runs that cannot be analysed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fsmrun.base.env import resolve_device
from fsmrun.base.errors import UserError
from fsmrun.data.encoding import BOS, PAD, RunData, Vocab, encode_corpus
from fsmrun.data.prepare import build_corpus
from fsmrun.data.sampling import Corpus
from fsmrun.nn.model import SequenceModel, build_model
from fsmrun.runs.layout import corpus_cache_dir
from fsmrun.runs.run_folder import RunFolder
from fsmrun.schemas.config import ExperimentConfig
from fsmrun.schemas.records import RunRecord
from fsmrun.train import checkpoint as ckpt

# Tokens per forward pass when labelling strings: LSTM and small transformers on a CPU stay
# well within memory and the per-call overhead is amortised.
TOKENS_PER_BATCH = 65_536
ANALYSABLE_TASKS = ("membership", "final_output")


class NotAnalysable(UserError):
    """A run that cannot be analysed (no checkpoint, failed, still running, wrong task)."""


@dataclass
class OpenRun:
    """Everything the analysis reads from one run; the model in eval mode on `device`."""

    folder: RunFolder
    record: RunRecord
    exp: ExperimentConfig
    corpus: Corpus
    data: RunData
    model: SequenceModel
    checkpoint: str
    device: torch.device

    @property
    def moore(self) -> bool:
        return self.exp.data.task == "final_output"


def check_analysable(
    folder: RunFolder, checkpoint: str | None = None
) -> tuple[RunRecord, ExperimentConfig, str]:
    """The run's record, config and the checkpoint to analyse (`checkpoint`, or with None the
    one the run reports, `train.evaluate_checkpoint`: the analysis then explains the model
    whose accuracies the run shows); NotAnalysable (one line naming the fix) when it has no
    usable checkpoint, failed, is being written, or its task has no class output to extract."""
    record = folder.read_record()
    status = folder.status()
    if status == "running":
        raise NotAnalysable(
            f"run {record.run_id} is still training; analyse it once it has finished"
        )
    if status == "failed":
        raise NotAnalysable(
            f"run {record.run_id} failed ({record.error or 'no error recorded'}); fix and "
            f"retrain it (`fsmrun show {record.run_id}`) before analysing"
        )
    exp = folder.read_config()
    if exp is None:
        raise NotAnalysable(f"run {record.run_id} has no config.json: it died during set-up")
    if exp.data.task not in ANALYSABLE_TASKS:
        raise NotAnalysable(
            f"run {record.run_id} has task {exp.data.task!r}, whose model has no trained class "
            f"(state-output) head to extract; analyse a membership or final_output run"
        )
    if checkpoint is None:
        checkpoint = exp.train.evaluate_checkpoint
    if checkpoint not in ("best", "last"):
        raise UserError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    if not folder.has_checkpoint(checkpoint):  # type: ignore[arg-type]
        raise NotAnalysable(
            f"run {record.run_id} has no {checkpoint} checkpoint (checkpoints/{checkpoint}.pt); "
            f"train or resume it first (`fsmrun resume {record.run_id}`)"
        )
    return record, exp, checkpoint


def open_run(
    folder: RunFolder, checkpoint: str | None = None, device: str | torch.device = "cpu"
) -> OpenRun:
    """Load a run's data (from the corpus cache) and the model of `checkpoint` (None: the
    checkpoint the run reports)."""
    record, exp, checkpoint = check_analysable(folder, checkpoint)
    device = resolve_device(str(device))
    dfa, corpus = build_corpus(exp, corpus_cache_dir(folder.results_root))
    data = encode_corpus(corpus, dfa, device, exp.data.task)
    model = build_model(
        exp.model,
        data.vocab.size,
        dfa.num_states,
        num_classes=data.num_classes,
        legal_next=data.legal_next,
    )
    ckpt.load_ckpt(folder.checkpoint(checkpoint), model)  # type: ignore[arg-type]
    model.to(device).eval()
    return OpenRun(folder, record, exp, corpus, data, model, checkpoint, device)


def encode_strings(strings: Sequence[str], vocab: Vocab) -> torch.Tensor:
    """Input ids [B, T+1]: BOS, the symbols, then PAD (T = longest string)."""
    width = max((len(s) for s in strings), default=0) + 1
    ids = torch.full((len(strings), width), PAD, dtype=torch.long)
    ids[:, 0] = BOS
    for row, s in enumerate(strings):
        if s:
            ids[row, 1 : len(s) + 1] = torch.tensor(vocab.encode(s))
    return ids


def _batches(strings: Sequence[str]) -> Iterator[list[int]]:
    """Indices of `strings` in batches of similar length, each under TOKENS_PER_BATCH."""
    order = sorted(range(len(strings)), key=lambda i: len(strings[i]))
    batch: list[int] = []
    for i in order:
        width = len(strings[i]) + 1
        if batch and width * (len(batch) + 1) > TOKENS_PER_BATCH:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def model_predictor(model: SequenceModel, vocab: Vocab, device: torch.device):  # noqa: ANN201
    """A `Predictor` (see extract.py): the class the model predicts after every prefix."""

    @torch.inference_mode()
    def predict(strings: Sequence[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(strings)
        for batch in _batches(strings):
            ids_bxt = encode_strings([strings[i] for i in batch], vocab).to(device)
            classes_bxt = model(ids_bxt).logits_class.argmax(-1).cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = classes_bxt[row, : len(strings[i]) + 1]
        return out

    return predict


def layer_names(model: SequenceModel) -> list[str]:
    """Names of the hidden states `capture` returns: embedding, then one per layer."""
    kind = "block" if model.cfg.arch == "transformer" else model.cfg.arch
    return ["embedding"] + [f"{kind}.{i}" for i in range(model.cfg.n_layers)]


@torch.inference_mode()
def split_hidden_states(
    model: SequenceModel, data: RunData, split: str, positions: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Hidden states of every layer at the real positions of `split`, with the DFA state there
    and the transition type that led to it (for the control task).

    Returns (states per layer, each [P, C] float32 on the CPU; state [P]; type [P]). The type
    of position t >= 1 is (state at t - 1) * V + (token at t); position 0 (the empty prefix)
    has type S * V. `positions` keeps only those rows (indices into the real positions).
    """
    split_data = data.splits[split]
    layers: list[list[torch.Tensor]] = []
    states, types = [], []
    vocab_size = data.vocab.size
    start_type = data.dfa.num_states * vocab_size
    batch_size = max(1, TOKENS_PER_BATCH // (split_data.max_length + 1))
    for lo in range(0, split_data.num_strings, batch_size):
        batch = split_data.batch(np.arange(lo, min(lo + batch_size, split_data.num_strings)))
        out = model(batch.input_ids_bxt, capture=True)
        mask_bxt = batch.loss_mask_bxt
        prev_bxt = torch.roll(batch.target_state_bxt, 1, dims=1)
        type_bxt = prev_bxt * vocab_size + batch.input_ids_bxt
        type_bxt[:, 0] = start_type
        for i, hidden_bxtxc in enumerate(out.hidden_states or []):
            if len(layers) <= i:
                layers.append([])
            layers[i].append(hidden_bxtxc[mask_bxt].float().cpu())
        states.append(batch.target_state_bxt[mask_bxt].cpu())
        types.append(type_bxt[mask_bxt].cpu())
    hidden = [torch.cat(parts) for parts in layers]
    state, kind = torch.cat(states), torch.cat(types)
    if positions is not None:
        hidden = [h[positions] for h in hidden]
        state, kind = state[positions], kind[positions]
    return hidden, state, kind


def split_strings(corpus: Corpus) -> list[str]:
    """Every string of the run's splits (train, val, test, test_ood), each once."""
    names = ["train", "val", "test"] + (["test_ood"] if corpus.num_strings("test_ood") else [])
    return list(dict.fromkeys(s for name in names for s in corpus.strings(name)))


def num_positions(data: RunData, split: str) -> int:
    return int(data.splits[split].loss_mask_nxt.sum())


__all__ = [
    "ANALYSABLE_TASKS",
    "NotAnalysable",
    "OpenRun",
    "check_analysable",
    "encode_strings",
    "layer_names",
    "model_predictor",
    "num_positions",
    "open_run",
    "split_hidden_states",
    "split_strings",
]
