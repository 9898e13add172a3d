"""fsmrun's training loop against a minimal hand-written PyTorch loop, through public functions.

`train_one_experiment` trains for --rounds + 1 epochs; hooks time each epoch's steps (from
`on_epoch_start` to its last `on_step_end`), and `on_epoch_end` runs one epoch of the bare loop
(same model init, batches, optimizer, schedule and clipping, same device), so the two alternate
epoch by epoch. Prints the median steps/s of each and fsmrun's ratio (target: >= 0.98 on CPU).

    python benchmarks/loop_overhead.py [--experiment regex_a] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

import torch
from rich.console import Console

from fsmrun.base.env import resolve_device
from fsmrun.base.seeding import torch_generator
from fsmrun.data.batching import iter_batches, steps_per_epoch
from fsmrun.data.prepare import build_data
from fsmrun.experiments import load_experiment
from fsmrun.nn.losses import compute_losses
from fsmrun.nn.model import build_model
from fsmrun.train.hooks import Hooks
from fsmrun.train.loop import train_one_experiment
from fsmrun.train.optim import clip_gradients, lr_at, optimizer_from_config, set_lr


def bare_epoch(model, optimizer, split, cfg, seed, epoch, first_step, total_steps) -> int:
    """What a researcher would write by hand: no logging, no bookkeeping."""
    step = first_step
    for batch in iter_batches(split, cfg.batch_size, seed, epoch):
        set_lr(optimizer, lr_at(step, cfg, total_steps))
        out = model(batch.input_ids_bxt)
        loss = compute_losses(out, batch, cfg)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(list(model.parameters()), cfg.grad_clip)
        optimizer.step()
        step += 1
    return step - first_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="regex_a")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    exp = load_experiment(args.experiment)
    train_cfg = exp.train.model_copy(
        update={"epochs": args.rounds + 1, "patience": None, "stop_threshold": None}
    )
    exp = exp.model_copy(update={"train": train_cfg})
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    data = build_data(exp, device, None)
    split = data.splits["train"]
    per_epoch = steps_per_epoch(split.num_strings, train_cfg.batch_size)
    total = train_cfg.epochs * per_epoch
    model = build_model(
        exp.model, data.vocab.size, data.dfa.num_states, generator=torch_generator(exp.seed, "init")
    ).to(device)
    optimizer = optimizer_from_config(model, train_cfg)

    fsm_rates: list[float] = []
    bare_rates: list[float] = []
    clock = {"start": 0.0, "last": 0.0, "bare_step": 0}

    def epoch_start(ctx) -> None:
        sync()
        clock["start"] = time.perf_counter()

    def step_end(ctx) -> None:
        if ctx.step % per_epoch == 0:  # the epoch's last step
            sync()
            clock["last"] = time.perf_counter()

    def epoch_end(ctx) -> None:
        fsm_rates.append(per_epoch / (clock["last"] - clock["start"]))
        t0 = time.perf_counter()
        n = bare_epoch(model, optimizer, split, train_cfg, exp.seed, ctx.epoch,
                       clock["bare_step"], total)  # fmt: skip
        sync()
        bare_rates.append(n / (time.perf_counter() - t0))
        clock["bare_step"] += n

    hooks = Hooks()
    hooks.add("on_epoch_start", epoch_start)
    hooks.add("on_step_end", step_end)
    hooks.add("on_epoch_end", epoch_end)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_one_experiment(
            exp,
            device=args.device,
            results_root=tmp,
            hooks=hooks,
            console=Console(file=io.StringIO(), force_terminal=False),
            command=["benchmark"],
        )
    fsm_rates, bare_rates = fsm_rates[1:], bare_rates[1:]  # round 0 warms up both
    f, b = statistics.median(fsm_rates), statistics.median(bare_rates)
    ratios = [x / y for x, y in zip(fsm_rates, bare_rates, strict=True)]
    print(f"experiment {exp.name}  device {device}  run {result.run_id} ({result.status})")
    print(f"steps per epoch {per_epoch}, rounds {len(fsm_rates)}")
    print(f"fsmrun  median {f:8.1f} steps/s")
    print(f"bare    median {b:8.1f} steps/s")
    per_round = statistics.median(ratios)
    print(f"ratio fsmrun/bare: median of medians {f / b:.3f}, median per round {per_round:.3f}")


if __name__ == "__main__":
    main()
