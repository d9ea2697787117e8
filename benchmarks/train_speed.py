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
figures are the best round's steps per second of wall-clock time and CPU seconds of this
process per step, with every round's steps per second beside them: other jobs on a shared
machine only ever slow a round down (with two threads, even its CPU time: OpenMP threads
spin while they wait for a core). The data are the toy set, generated into a temporary
cache.
"""

from __future__ import annotations

import argparse
import os
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
    from sepkit.devices import select_device
    from sepkit.train import Distributed, StopSignals, Trainer

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
    loader = iter(trainer.loaders.training)
    return [next(loader) for _ in range(count)]


def timed_steps(trainer, held: list, steps: int) -> tuple[float, float]:
    """(steps per second of wall-clock time, CPU seconds of this process per step)."""
    trainer.network.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(steps):
        mixture, sources = held[step % len(held)]
        if trainer.batch_augmentation is not None:
            mixture, sources = trainer.batch_augmentation(mixture, sources)
        if trainer._step(mixture, sources) is None:
            raise RuntimeError("a step was skipped (non-finite loss): the figure would lie")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return steps / wall, cpu / steps


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
            timed_steps(trainers[name, amp], held[name], 2)

    rates: dict[tuple[str, bool], list[float]] = {key: [] for key in trainers}
    cpu: dict[tuple[str, bool], list[float]] = {key: [] for key in trainers}
    for _ in range(arguments.rounds):
        for name, amp in trainers:
            rate, cpu_per_step = timed_steps(trainers[name, amp], held[name], arguments.steps)
            rates[name, amp].append(rate)
            cpu[name, amp].append(cpu_per_step)

    load = os.getloadavg()[0]
    print(
        f"\n{arguments.threads} CPU threads, {arguments.steps} steps x {arguments.rounds} rounds, "
        f"load average {load:.1f} at the end; steps per second of wall-clock time (best "
        "round, then each round) and CPU seconds per step (best round):"
    )
    print(
        "| setup | float32 steps/s | bfloat16 AMP steps/s | AMP / float32 (wall) "
        "| float32 CPU s/step | AMP CPU s/step | AMP / float32 (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in setups:
        plain, mixed = (max(rates[name, amp]) for amp in (False, True))
        plain_cpu, mixed_cpu = (min(cpu[name, amp]) for amp in (False, True))
        rounds = {amp: ", ".join(f"{x:.2f}" for x in rates[name, amp]) for amp in (False, True)}
        print(
            f"| {name} | {plain:.2f} ({rounds[False]}) | {mixed:.2f} ({rounds[True]}) "
            f"| {mixed / plain:.2f} | {plain_cpu:.2f} | {mixed_cpu:.2f} "
            f"| {plain_cpu / mixed_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
