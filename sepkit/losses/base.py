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

    @abc.abstractmethod
    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """A scalar to minimise."""
