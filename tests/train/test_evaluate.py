"""evaluate(): an oracle scores 1.0, baselines by hand, determinism, training mode restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fsmrun.data.encoding import SplitData, Vocab, encode_split, legal_next_table
from fsmrun.lang.fsm import compile_regex
from fsmrun.nn.model import ModelOutput, build_model
from fsmrun.schemas.config import ModelConfig, TrainConfig
from fsmrun.train.evaluate import evaluate

# Language a*b. Labels: ab 1, ba 0, b 1, aab 1, bb 0, a 0, abb 0, aaaaab 1.
STRINGS = ["ab", "ba", "b", "aab", "bb", "a", "abb", "aaaaab"]


def make_split(device: str = "cpu") -> tuple[SplitData, torch.Tensor]:
    dfa, vocab = compile_regex("a*b", "ab"), Vocab("ab")
    return encode_split("val", STRINGS, None, dfa, vocab, device), legal_next_table(
        dfa, vocab, device
    )


class Oracle(nn.Module):
    """Looks each input row up in the split and returns logits of its targets: the class and
    state targets as they are, the next-token target where it is legal (else a legal token)."""

    def __init__(self, split: SplitData, legal_sxv: torch.Tensor) -> None:
        super().__init__()
        self.split, self.legal_sxv = split, legal_sxv
        self.calls_in_training_mode: list[bool] = []

    def forward(self, input_ids_bxt: torch.Tensor) -> ModelOutput:
        self.calls_in_training_mode.append(self.training)
        T = input_ids_bxt.shape[1]
        same_nxb = (self.split.input_ids_nxt[:, None, :T] == input_ids_bxt[None]).all(-1)
        row_b = same_nxb.long().argmax(0)  # strings are distinct, so one row matches

        def take(t_nxt: torch.Tensor) -> torch.Tensor:
            return t_nxt[row_b, :T]

        state_bxt, next_bxt = take(self.split.target_state_nxt), take(self.split.target_next_nxt)
        legal_bxtxv = self.legal_sxv[state_bxt]
        legal_target_bxt = legal_bxtxv.gather(2, next_bxt.unsqueeze(2)).squeeze(2)
        next_bxt = torch.where(legal_target_bxt, next_bxt, legal_bxtxv.long().argmax(2))

        def logits(target_bxt: torch.Tensor, num: int) -> torch.Tensor:
            return 30.0 * nn.functional.one_hot(target_bxt, num).float()

        return ModelOutput(
            logits(next_bxt, self.legal_sxv.shape[1]),
            logits(take(self.split.target_class_nxt), 2),
            logits(state_bxt, self.legal_sxv.shape[0]),
        )


def test_an_oracle_scores_one_everywhere() -> None:
    split, legal_sxv = make_split()
    m = evaluate(Oracle(split, legal_sxv), split, legal_sxv, TrainConfig(), batch_size=3,
                 length_bins=[1, 3, 5, 7])  # fmt: skip
    assert m.n_strings == len(STRINGS)
    for name in ("token_acc", "next_valid", "class_acc", "string_acc", "state_acc"):
        assert getattr(m, name) == 1.0, name
    assert m.nll == pytest.approx(0.0, abs=1e-9) and m.loss == pytest.approx(0.0, abs=1e-9)
    assert [(b.lo, b.hi, b.n_strings) for b in m.bins] == [(1, 2, 5), (3, 4, 2), (5, 6, 1)]
    for b in m.bins:
        assert (b.string_acc, b.class_acc, b.token_acc, b.next_valid, b.state_acc) == (1.0,) * 5


def test_baselines_are_the_majority_class_rates() -> None:
    split, legal_sxv = make_split()
    m = evaluate(Oracle(split, legal_sxv), split, legal_sxv, TrainConfig(), batch_size=4,
                 length_bins=[1, 2, 3])  # fmt: skip
    # Strings: 4 accepted, 4 rejected. Prefixes (t = 0..n) accepted: one each in ab, ba, b,
    # aab, bb, abb, aaaaab; none in a -> 7 of 3+3+2+4+3+2+4+7 = 28 positions.
    assert m.string_baseline == 0.5
    assert m.class_baseline == pytest.approx(21 / 28)
    length_1, length_2 = m.bins  # b, a | ab, ba, bb
    assert length_1.string_baseline == 0.5 and length_1.class_baseline == 0.75
    assert length_2.string_baseline == pytest.approx(2 / 3)
    assert length_2.class_baseline == pytest.approx(6 / 9)


def tiny_model(seed: int = 0) -> nn.Module:
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32)
    return build_model(
        cfg, vocab_size=5, num_states=3, generator=torch.Generator().manual_seed(seed)
    )


def test_evaluation_is_deterministic_and_restores_training_mode() -> None:
    split, legal_sxv = make_split()
    model, cfg = tiny_model(), TrainConfig()
    model.train()
    first = evaluate(model, split, legal_sxv, cfg, batch_size=3, length_bins=[1, 3, 7])
    assert model.training
    model.eval()
    second = evaluate(model, split, legal_sxv, cfg, batch_size=3, length_bins=[1, 3, 7])
    assert not model.training
    assert first == second
    assert 0.0 <= first.token_acc <= 1.0 and first.nll > 0.0


def test_model_runs_in_eval_mode_and_training_mode_is_restored_after_an_error() -> None:
    split, legal_sxv = make_split()
    oracle = Oracle(split, legal_sxv).train()
    evaluate(oracle, split, legal_sxv, TrainConfig(), batch_size=8, length_bins=None)
    assert oracle.calls_in_training_mode == [False] and oracle.training

    class Broken(nn.Module):
        def forward(self, input_ids_bxt: torch.Tensor) -> ModelOutput:
            raise RuntimeError("boom")

    broken = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(broken, split, legal_sxv, TrainConfig(), batch_size=8, length_bins=None)
    assert broken.training


def test_bfloat16_autocast_evaluates_close_to_float32() -> None:
    split, legal_sxv = make_split()
    model, cfg = tiny_model(), TrainConfig()
    full = evaluate(model, split, legal_sxv, cfg, batch_size=8, length_bins=None)
    low = evaluate(model, split, legal_sxv, cfg, batch_size=8, length_bins=None,
                   amp_dtype=torch.bfloat16)  # fmt: skip
    assert low.nll == pytest.approx(full.nll, rel=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_evaluation_matches_cpu() -> None:
    cpu_split, cpu_legal = make_split("cpu")
    cuda_split, cuda_legal = make_split("cuda")
    model, cfg = tiny_model(), TrainConfig()
    on_cpu = evaluate(model, cpu_split, cpu_legal, cfg, batch_size=3, length_bins=[1, 3, 7])
    on_cuda = evaluate(model.cuda(), cuda_split, cuda_legal, cfg, batch_size=3,
                       length_bins=[1, 3, 7], amp_dtype=torch.bfloat16)  # fmt: skip
    assert on_cuda.n_strings == on_cpu.n_strings
    assert on_cuda.nll == pytest.approx(on_cpu.nll, rel=0.05)


# --- every task end to end -------------------------------------------------------------

CYCLE3 = {  # a 3-cycle: '+' is not an alphabet symbol, so r steps right and l left
    "states": ["p0", "p1", "p2"],
    "start": "p0",
    "outputs": {"p0": 0, "p1": 1, "p2": 2},
    "transitions": {
        "p0": {"s": "p0", "r": "p1", "l": "p2"},
        "p1": {"s": "p1", "r": "p2", "l": "p0"},
        "p2": {"s": "p2", "r": "p0", "l": "p1"},
    },
}
TASK_DATA = {
    "membership": {"regex": "b*(ab*ab*)*", "alphabet": "ab", "sampling": "uniform"},
    "final_output": {"dfa": CYCLE3, "task": "final_output", "sampling": "uniform"},
    "char_prediction": {
        "regex": "(a|b)*b",
        "alphabet": "ab",
        "task": "char_prediction",
        "sampling": "positives",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASK_DATA))
def test_each_task_trains_end_to_end_into_a_schema_valid_metrics_json(task, tmp_path) -> None:
    from fsmrun.schemas.config import ExperimentConfig
    from fsmrun.schemas.records import Metrics
    from fsmrun.train.loop import train_one_experiment

    lengths = {"min_len": 1, "max_len": 7, "ood_min_len": 8, "ood_max_len": 9}
    sizes = {"n_train": 48, "n_val": 16, "n_test": 16, "n_test_ood": 16}
    train = {"epochs": 2, "batch_size": 16, "warmup_steps": 1, "patience": None}
    if task == "char_prediction":
        train.update(monitor="val.char_acc", lambda_class=0.0, lambda_state=0.0)
    if task == "final_output":
        train["class_loss_on"] = "final"
    exp = ExperimentConfig.model_validate(
        {
            "name": f"micro_{task}",
            "data": {**TASK_DATA[task], **lengths, **sizes},
            "model": {"arch": "gru", "d_model": 8, "n_layers": 1},
            "train": train,
        }
    )
    result = train_one_experiment(exp, device="cpu", results_root=tmp_path, progress=False)
    assert result.status == "completed"
    metrics = Metrics.model_validate_json((result.run_dir / "metrics.json").read_text())
    for split in (metrics.best.test, metrics.best.test_ood):
        assert split is not None and split.bins
        assert split.string_baseline is not None and split.next_valid_baseline is not None
        if task == "char_prediction":
            assert split.char_acc is not None and split.char_baseline is not None
            assert split.char_pos_acc is not None and split.char_pos_baseline is not None
            assert all(b.char_acc is not None for b in split.bins)
        else:
            assert split.char_acc is None
            assert split.string_balanced_acc is not None and split.class_balanced_acc is not None
    if task == "final_output":  # a 3-way head: three classes can appear as string labels
        assert metrics.best.test.string_baseline < 1.0
