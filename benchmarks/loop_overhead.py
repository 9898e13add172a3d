"""fsmrun's training step loop against a minimal hand-written PyTorch loop.

Both run the same model, batches, optimizer, learning-rate schedule and clipping on the same
device, alternating epoch by epoch; prints the median steps/s of each and fsmrun's ratio to
the bare loop (target: >= 0.95 on CPU for the default model). fsmrun's side is the real
epoch loop (`train_epoch_steps`: progress bar, history lines every `log_every` steps,
heartbeat, hooks check), not a copy of it.

    python benchmarks/loop_overhead.py [--experiment regex_a] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from fsmrun.core.dataset import iter_batches
from fsmrun.core.determinism import config_hash
from fsmrun.core.env import resolve_device
from fsmrun.core.loop import SessionControls, _GracefulStop, _new_record, _Session
from fsmrun.core.losses import compute_losses
from fsmrun.core.optim import clip_gradients, lr_at, optimizer_from_config, set_lr
from fsmrun.core.registry import allocate_run_dir
from fsmrun.experiments import load_experiment


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
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir, version = allocate_run_dir(root, exp.name, config_hash(exp))
        record = _new_record(exp, run_dir, version, device, ["benchmark"])
        console = Console(file=io.StringIO(), stderr=False, force_terminal=False)
        session = _Session(
            exp,
            run_dir,
            record,
            device=device,
            results_root=root,
            controls=SessionControls(console=console),
        )
        session.setup()
        session._wall_base, session._session_start = 0.0, time.monotonic()
        session._beat = time.monotonic()
        model = copy.deepcopy(session.model)
        optimizer = optimizer_from_config(model, exp.train)
        split = session.data.splits["train"]
        total = session.runner.total_steps
        fsm_rates, bare_rates = [], []
        bare_step = 0
        with _GracefulStop() as stopper:
            for r in range(args.rounds + 1):  # round 0 warms up both
                session.pos.batch_in_epoch = 0
                t0 = time.perf_counter()
                before = session.pos.step
                session.train_epoch_steps(r, stopper)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                fsm = (session.pos.step - before) / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                n = bare_epoch(model, optimizer, split, exp.train, exp.seed, r, bare_step, total)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                bare = n / (time.perf_counter() - t0)
                bare_step += n
                if r > 0:
                    fsm_rates.append(fsm)
                    bare_rates.append(bare)
        session.history.close()
    f, b = statistics.median(fsm_rates), statistics.median(bare_rates)
    ratios = [x / y for x, y in zip(fsm_rates, bare_rates, strict=True)]
    print(f"experiment {exp.name}  device {device}  {session.model.summary()}")
    print(
        f"steps per epoch {len(split.lengths_np) // exp.train.batch_size + 1}, rounds {args.rounds}"
    )
    print(f"fsmrun  median {f:8.1f} steps/s")
    print(f"bare    median {b:8.1f} steps/s")
    per_round = statistics.median(ratios)
    print(f"ratio fsmrun/bare: median of medians {f / b:.3f}, median per round {per_round:.3f}")


if __name__ == "__main__":
    main()
