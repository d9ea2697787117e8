"""Mask activations and heads: turn network outputs into time-frequency masks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Mask(nn.Module):
    """A mask nonlinearity.

    ``sigmoid`` gives independent masks in (0, 1); ``softmax`` makes masks sum to one over
    ``source_dim`` (the sources share the mixture); ``relu`` gives unbounded non-negative
    masks (Open-Unmix's, which may exceed one).
    """

    kinds = ("sigmoid", "softmax", "relu")

    def __init__(self, kind: str = "sigmoid", source_dim: int = 1) -> None:
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"unknown mask {kind!r}: use one of {list(self.kinds)}")
        self.kind = kind
        self.source_dim = source_dim

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "sigmoid":
            return torch.sigmoid(x)
        if self.kind == "softmax":
            return torch.softmax(x, dim=self.source_dim)
        return torch.relu(x)


class MaskHead(nn.Module):
    """Per-frame features (batch, frames, features) to masks (batch, sources, channels,
    bins, frames): a fully connected layer and a mask nonlinearity (``sigmoid``: each mask
    in (0, 1); ``softmax``: masks summing to one over the sources)."""

    def __init__(
        self, input_size: int, nb_sources: int, nb_channels: int, nb_bins: int, mask: str
    ) -> None:
        super().__init__()
        self.shape = (nb_sources, nb_channels, nb_bins)
        self.linear = nn.Linear(input_size, nb_sources * nb_channels * nb_bins)
        self.mask = Mask(mask, source_dim=1)

    def forward(self, features: Tensor) -> Tensor:
        batch, frames, _ = features.shape
        x = self.linear(features).reshape(batch, frames, *self.shape)
        return self.mask(x.permute(0, 2, 3, 4, 1))
