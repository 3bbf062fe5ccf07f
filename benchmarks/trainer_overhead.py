"""Overhead of ``Trainer.fit`` against a hand-written PyTorch loop on the same model and data.

Same MLP AutoEncoder (64 → 8), same data (scikit-learn digits / 16), same epochs, batch size,
optimizer and shuffling; the Trainer runs with the progress bar off and no checkpoints. The two
are timed alternately for several repetitions and the medians compared. The last line printed is
``ratio <trainer / loop>`` (goal: <= 1.05).

    python benchmarks/trainer_overhead.py [--reps 7] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sklearn.datasets import load_digits

from isthmus._runtime import configure
from isthmus.models import AutoEncoder
from isthmus.train import Trainer, TrainerConfig

BATCH, LR = 64, 1e-3


def make_model(seed: int) -> AutoEncoder:
    torch.manual_seed(seed)
    return AutoEncoder.mlp(64, 8)


def hand_loop(x: torch.Tensor, epochs: int, seed: int) -> float:
    """What a user would write: shuffle, slice, zero_grad, loss, backward, step, .item() for the log.

    It calls ``model.set_step`` like the Trainer does: that is part of the model protocol (KL warm-up
    and other step-dependent terms read it), so it is model cost, not trainer overhead.
    """
    model = make_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), BATCH):
            xb = x[perm[start:start + BATCH]]
            model.set_step(step)
            step += 1
            opt.zero_grad(set_to_none=True)
            loss = model.compute_loss(xb).loss
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
    return time.perf_counter() - t0


def trainer_fit(x: torch.Tensor, epochs: int, seed: int) -> float:
    model = make_model(seed)
    cfg = TrainerConfig(epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, seed=seed, progress=False,
                        device="cpu")
    trainer = Trainer(model, cfg)
    t0 = time.perf_counter()
    trainer.fit(x)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    configure(1, force=True)
    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)  # (1797, 64)
    hand_loop(x, 1, 0), trainer_fit(x, 1, 0)  # warm-up (allocator, lazy init)
    loop_times, trainer_times = [], []
    for rep in range(args.reps):
        pair = [(loop_times, hand_loop), (trainer_times, trainer_fit)]
        for times, fn in pair if rep % 2 == 0 else pair[::-1]:
            times.append(fn(x, args.epochs, rep))
    loop_t, trainer_t = statistics.median(loop_times), statistics.median(trainer_times)
    steps = args.epochs * -(-len(x) // BATCH)
    print(f"data {tuple(x.shape)}, {args.epochs} epochs x batch {BATCH} = {steps} steps, {args.reps} reps, "
          f"threads={torch.get_num_threads()}")
    print(f"hand-written loop  median {loop_t:.3f} s  ({1e6 * loop_t / steps:.0f} us/step)")
    print(f"Trainer.fit        median {trainer_t:.3f} s  ({1e6 * trainer_t / steps:.0f} us/step)")
    print(f"ratio {trainer_t / loop_t:.3f}")


if __name__ == "__main__":
    main()
