"""Layer normalisations of feature sequences (batch, features, frames), as Conv-TasNet uses.

``global``      over all features and frames of an example (gLN; looks at the whole
                signal, so only for non-causal models)
``cumulative``  over all features and the frames up to the current one (the causal cLN
                of the Conv-TasNet paper)
``channel``     over the features of each frame on its own (the "channel-wise" LN of
                Kaituo Xu's and Demucs's Conv-TasNet; causal)
``batch``       batch normalisation over batch and frames, per feature

Each has a learned gain and bias per feature, stored as (1, features, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LAYER_NORMS = ("global", "cumulative", "channel", "batch")
CAUSAL_LAYER_NORMS = ("cumulative", "channel", "batch")


class _AffineLayerNorm(nn.Module):
    def __init__(self, features: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, features, 1))
        self.bias = nn.Parameter(torch.zeros(1, features, 1))

    def _normalise(self, x: Tensor, mean: Tensor, variance: Tensor) -> Tensor:
        # weight (x - mean) / std + bias as one multiply-add over x: the statistics are
        # small tensors, x is the whole feature map
        scale = self.weight * (variance + self.eps).rsqrt()
        return torch.addcmul(self.bias - mean * scale, x, scale)


class GlobalLayerNorm(_AffineLayerNorm):
    """(batch, features, frames) normalised by the mean and variance of each example."""

    def forward(self, x: Tensor) -> Tensor:
        variance, mean = torch.var_mean(x, dim=(1, 2), correction=0, keepdim=True)
        return self._normalise(x, mean, variance)


class ChannelLayerNorm(_AffineLayerNorm):
    """(batch, features, frames) normalised per frame over its features."""

    def forward(self, x: Tensor) -> Tensor:
        variance, mean = torch.var_mean(x, dim=1, correction=0, keepdim=True)
        return self._normalise(x, mean, variance)


class CumulativeLayerNorm(_AffineLayerNorm):
    """(batch, features, frames) normalised at frame k by the statistics of frames 0..k."""

    def forward(self, x: Tensor) -> Tensor:
        features, frames = x.shape[1], x.shape[2]
        count = features * torch.arange(1, frames + 1, device=x.device, dtype=x.dtype)
        mean = x.sum(dim=1, keepdim=True).cumsum(dim=2) / count
        mean_square = x.square().sum(dim=1, keepdim=True).cumsum(dim=2) / count
        variance = (mean_square - mean.square()).clamp_min(0.0)
        return self._normalise(x, mean, variance)


def layer_norm(kind: str, features: int) -> nn.Module:
    """One of ``LAYER_NORMS`` for (batch, features, frames) inputs."""
    if kind == "global":
        return GlobalLayerNorm(features)
    if kind == "cumulative":
        return CumulativeLayerNorm(features)
    if kind == "channel":
        return ChannelLayerNorm(features)
    if kind == "batch":
        return nn.BatchNorm1d(features)
    raise ValueError(f"unknown layer norm {kind!r}: use one of {list(LAYER_NORMS)}")
