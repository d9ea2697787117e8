"""Log compression of magnitude spectrograms, the input of recurrent mask networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LogMagnitude(nn.Module):
    """Magnitudes to a log scale, elementwise, any shape.

    ``db``: ``10 log10(|X|^2 + floor)``, decibels with a floor (``floor`` 1e-10: -100 dB), so
    silent bins stay finite; the input of nussl's mask-inference and deep-clustering
    networks. ``log1p``: ``log(1 + |X|)``, zero for silence.
    """

    kinds = ("db", "log1p")

    def __init__(self, kind: str = "db", floor: float = 1e-10) -> None:
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"unknown log magnitude {kind!r}: use one of {list(self.kinds)}")
        if floor <= 0:
            raise ValueError(f"log magnitude floor={floor}: use a positive power floor")
        self.kind = kind
        self.floor = floor

    def forward(self, magnitude: Tensor) -> Tensor:
        if self.kind == "db":
            return 10.0 * torch.log10(magnitude.square() + self.floor)
        return torch.log1p(magnitude)

    @property
    def silence(self) -> float:
        """The value of a silent bin."""
        return 10.0 * math.log10(self.floor) if self.kind == "db" else 0.0
