"""What every sepkit loss is: a module that names the model outputs it reads."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor, nn


class SeparationLoss(nn.Module, abc.ABC):
    """``loss(outputs, references) -> scalar``.

    ``outputs`` is the model's forward dict; ``references`` is the model's
    ``references(sources, mixture)`` dict (see ``sepkit.models.base``). ``reads`` lists the
    output names the loss needs, so the trainer can refuse a model/loss pair that does
    not fit before the first step.
    """

    reads: ClassVar[tuple[str, ...]] = ()

    def fit_sources(self, ordered: bool) -> None:
        """Prepare for the dataset's sources, before the first step: ``ordered`` when each
        has its place and name (music stems), not when their order is arbitrary (speakers).
        A ValueError saying why when this loss cannot train on them. By default a loss
        compares each estimate with the source in its place, which needs ordered sources."""
        if not ordered:
            raise ValueError(
                f"{type(self).__name__} compares each estimate with the source in its place, "
                "but these sources have no order: use a permutation-invariant loss that "
                "reads the model's outputs (a loss=pit_* or auto_pit_* option)"
            )

    @abc.abstractmethod
    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """A scalar to minimise."""
