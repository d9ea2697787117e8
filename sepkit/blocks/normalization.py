"""Normalisation layers: learnable shift and scale, batch norm over features, and
per-feature statistics gathered from a dataset."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ShiftScale(nn.Module):
    """Learnable per-feature affine map over the last axis.

    ``shift_first`` computes ``(x + shift) * scale`` (an input standardisation, with
    ``shift = -mean`` and ``scale = 1 / std``); otherwise ``x * scale + shift`` (an output
    de-standardisation). Both parameters have shape (features,).
    """

    def __init__(
        self,
        features: int,
        shift_first: bool = True,
        shift: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.shift_first = shift_first
        self.shift = nn.Parameter(torch.full((features,), float(shift)))
        self.scale = nn.Parameter(torch.full((features,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        if self.shift_first:
            return (x + self.shift) * self.scale
        return x * self.scale + self.shift

    @torch.no_grad()
    def standardise_with(self, mean: Tensor, std: Tensor) -> None:
        """Set an input map (shift first) so that data of ``mean`` and ``std`` comes out
        with zero mean and unit deviation per feature."""
        if not self.shift_first:
            raise ValueError("standardise_with is for an input map (shift_first=True)")
        self.shift.copy_(-mean.to(self.shift))
        self.scale.copy_(1.0 / std.to(self.scale))


class FeatureBatchNorm(nn.BatchNorm1d):
    """Batch norm over the last axis of a (..., features) tensor.

    Statistics are shared over every leading axis (batch, frames, channels): the
    time-distributed batch norm of Open-Unmix and the mask-inference recipes.
    """

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class RunningStatistics:
    """Mean and standard deviation per feature, accumulated over many arrays.

    ``update`` takes (..., features) tensors of any number of rows; sums are kept in
    float64 so hours of spectrogram frames add up without drift. ``std`` is floored at
    ``min_std_ratio`` times its largest value (Open-Unmix floors at 1e-4 of the maximum)
    so silent features do not blow up a 1 / std scale.
    """

    def __init__(self, min_std_ratio: float = 1e-4) -> None:
        self.count = 0
        self.total: Tensor | None = None
        self.total_squares: Tensor | None = None
        self.min_std_ratio = min_std_ratio

    def update(self, rows: Tensor) -> None:
        rows = rows.detach().reshape(-1, rows.shape[-1]).to(torch.float64)
        if self.total is None:
            self.total = torch.zeros(rows.shape[-1], dtype=torch.float64, device=rows.device)
            self.total_squares = torch.zeros_like(self.total)
        self.count += rows.shape[0]
        self.total += rows.sum(0)
        self.total_squares += rows.square().sum(0)

    def result(self) -> tuple[Tensor, Tensor]:
        """(mean, std) per feature, float32."""
        if self.total is None or self.count == 0:
            raise ValueError("no data was given to compute statistics from")
        mean = self.total / self.count
        variance = (self.total_squares / self.count - mean.square()).clamp_min(0.0)
        std = variance.sqrt()
        std = std.clamp_min(self.min_std_ratio * float(std.max()))
        if float(std.max()) == 0.0:
            std = torch.ones_like(std)
        return mean.float(), std.float()
