"""What each process trains and validates on: the epoch's share of training items, and the
DataLoaders over the dataset's training and validation sets."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from sepkit.data.base import SeparationData
from sepkit.errors import SepkitError
from sepkit.train.processes import Distributed


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys for one process's share of an epoch.

    The order is a permutation seeded by ``(seed, epoch)``, identical in every process,
    which then takes every ``world_size``-th key from its rank on. With
    ``steps_per_epoch`` the permutations repeat (each with its own seed) until there are
    ``steps_per_epoch * accumulate * batch_size`` keys per process: an optimizer step
    takes ``accumulate`` batches.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        steps_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        accumulate: int = 1,
    ) -> None:
        if size == 0:
            raise SepkitError("the training set is empty: check dataset.root and its train split")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.rank = rank
        self.world_size = world_size
        self.accumulate = accumulate
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Sample ``epoch``, leaving out its first ``skip_batches`` batches (done before an
        interruption)."""
        self.epoch = epoch
        self.skip = skip_batches * self.batch_size

    def keys_per_epoch(self) -> int:
        if self.steps_per_epoch:
            return self.steps_per_epoch * self.accumulate * self.batch_size
        return self.size // self.world_size

    def ends_step(self, batch: int) -> bool:
        """Whether batch number ``batch`` of the epoch (from 0) is the last of its
        optimizer step: every ``accumulate``-th, and the epoch's last."""
        batches = math.ceil(self.keys_per_epoch() / self.batch_size)
        return (batch + 1) % self.accumulate == 0 or batch + 1 == batches

    def items_in_step(self, batch: int) -> int:
        """How many items the optimizer step of batch number ``batch`` averages over (fewer
        than ``accumulate * batch_size`` only at the end of an epoch)."""
        first = batch - batch % self.accumulate
        return min(
            self.accumulate * self.batch_size, self.keys_per_epoch() - first * self.batch_size
        )

    def __len__(self) -> int:
        return max(0, self.keys_per_epoch() - self.skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        needed = self.keys_per_epoch() * self.world_size
        order: list[np.ndarray] = []
        repeat = 0
        while sum(len(part) for part in order) < needed:
            rng = np.random.default_rng([self.seed, self.epoch, repeat])
            order.append(rng.permutation(self.size))
            repeat += 1
        keys = np.concatenate(order)[:needed][self.rank :: self.world_size]
        for index in keys[self.skip :]:
            yield (self.epoch, int(index))


@dataclass
class Loaders:
    """This process's training and validation batches."""

    sampler: EpochSampler
    training: DataLoader
    validation: DataLoader


def data_loaders(
    data: SeparationData,
    trainer: Any,
    distributed: Distributed,
    device: torch.device,
    model_segment: float,
) -> Loaders:
    """Training batches of ``trainer.batch_size`` segments (of ``model_segment`` seconds when
    the dataset sets no segment) from this process's share of each epoch
    (``trainer.accumulate`` of them per optimizer step);
    validation items one at a time (whole tracks differ in length), every
    ``world_size``-th from the rank on."""
    training_set = data.training_set(model_segment)
    sampler = EpochSampler(
        len(training_set),
        trainer.batch_size,
        trainer.seed,
        trainer.steps_per_epoch,
        distributed.rank,
        distributed.world_size,
        trainer.accumulate,
    )
    training = DataLoader(
        training_set,
        batch_size=trainer.batch_size,
        sampler=sampler,
        num_workers=trainer.num_workers,
        persistent_workers=trainer.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    validation_set = data.validation_set()
    shard = range(distributed.rank, len(validation_set), distributed.world_size)
    validation = DataLoader(
        Subset(validation_set, shard), batch_size=1, num_workers=trainer.num_workers
    )
    return Loaders(sampler, training, validation)
