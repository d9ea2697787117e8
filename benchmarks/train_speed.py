"""Training steps per second on the CPU, without and with mixed precision (bfloat16 autocast).

    PYTHONPATH=. /tmp/venv/bin/python benchmarks/train_speed.py [--steps 10] [--rounds 3]
        [--threads 2] [--setup NAME=OVERRIDES ...]

Each setup is a training config composed as ``sepkit train`` composes it; the default
setups are the two CPU demos (``experiment=umx_toy_demo``: Open-Unmix with hidden size 64
on 3 s stereo segments at 44.1 kHz, batch 8; ``experiment=convtasnet_toy``: a small
Conv-TasNet on 1 s stereo segments at 22.05 kHz, batch 8). For each setup two
``sepkit.train.Trainer`` objects are built from the same config, ``trainer.amp=false`` and
``trainer.amp=true``, and their own ``_step`` (forward under the trainer's autocast,
loss, backward, gradient clipping, optimizer step: the code ``sepkit train`` runs per
batch) is timed on the same batches, drawn once from the trainer's DataLoader and kept in
memory, so data loading is not timed. Rounds alternate between setups and precisions; the
figure is the median over rounds of steps per second (other jobs on a shared machine only
slow a round down, and the median ignores one bad round). The data are the toy set,
generated into a temporary cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

DEFAULT_SETUPS = {
    "openunmix (umx_toy_demo)": ["experiment=umx_toy_demo"],
    "convtasnet (convtasnet_toy)": ["experiment=convtasnet_toy"],
}


def build_trainer(overrides: list[str], amp: bool, run_dir: Path):
    """A Trainer exactly as ``sepkit train <overrides> trainer.amp=<amp>`` builds it."""
    from hydra import compose, initialize_config_dir

    from sepkit.config import config_dir, register_schemas
    from sepkit.train import Distributed, StopSignals, Trainer, select_device

    register_schemas()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                f"trainer.amp={str(amp).lower()}",
                "trainer.device=cpu",
                "trainer.progress=false",
                "trainer.threads=null",
            ],
        )
    return Trainer(cfg, run_dir, Distributed(), select_device("cpu"), StopSignals()), cfg


def batches(trainer, count: int) -> list:
    loader = iter(trainer.training_loader)
    return [next(loader) for _ in range(count)]


def steps_per_second(trainer, held: list, steps: int) -> float:
    trainer.network.train()
    start = time.perf_counter()
    for step in range(steps):
        mixture, sources = held[step % len(held)]
        if trainer.batch_augmentation is not None:
            mixture, sources = trainer.batch_augmentation(mixture, sources)
        if trainer._step(mixture, sources) is None:
            raise RuntimeError("a step was skipped (non-finite loss): the figure would lie")
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="a setup of your own: a name, '=', space-separated overrides",
    )
    arguments = parser.parse_args()
    os.environ.setdefault("SEPKIT_CACHE", tempfile.mkdtemp(prefix="sepkit-benchmark-"))

    import torch

    torch.set_num_threads(arguments.threads)
    setups = dict(DEFAULT_SETUPS)
    for given in arguments.setup:
        name, _, overrides = given.partition("=")
        setups[name] = overrides.split()

    trainers, held = {}, {}
    for name, overrides in setups.items():
        for amp in (False, True):
            run_dir = Path(tempfile.mkdtemp(prefix="sepkit-benchmark-run-"))
            trainer, cfg = build_trainer(overrides, amp, run_dir)
            trainers[name, amp] = trainer
        # the same batches for both precisions
        held[name] = batches(trainers[name, False], 4)
        shape = tuple(held[name][0][0].shape)
        print(
            f"{name}: model {type(trainer.model).__name__}, batch (items, channels, samples)"
            f" {shape} at {cfg.dataset.sample_rate} Hz, loss {type(trainer.loss_function).__name__}"
        )
        for amp in (False, True):  # warm-up: first-call allocations, autocast caches
            steps_per_second(trainers[name, amp], held[name], 2)

    figures: dict[tuple[str, bool], list[float]] = {key: [] for key in trainers}
    for _ in range(arguments.rounds):
        for name, amp in trainers:
            rate = steps_per_second(trainers[name, amp], held[name], arguments.steps)
            figures[name, amp].append(rate)

    print(
        f"\n{arguments.threads} CPU threads, {arguments.steps} steps x {arguments.rounds} rounds,"
        " median steps per second (all rounds):"
    )
    print("| setup | float32 steps/s | bfloat16 autocast steps/s | AMP / float32 |")
    print("|---|---|---|---|")
    for name in setups:
        plain = statistics.median(figures[name, False])
        mixed = statistics.median(figures[name, True])
        print(
            f"| {name} | {plain:.2f} ({', '.join(f'{x:.2f}' for x in figures[name, False])})"
            f" | {mixed:.2f} ({', '.join(f'{x:.2f}' for x in figures[name, True])})"
            f" | {mixed / plain:.2f} |"
        )


if __name__ == "__main__":
    main()
