"""Embeddings of time-frequency bins for deep clustering."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BinEmbedding(nn.Module):
    """One unit-norm ``embedding_dim`` vector per frequency bin, from per-frame features.

    A linear projection of each frame's features to ``nb_bins * embedding_dim`` values, a
    nonlinearity (``sigmoid`` as nussl, ``tanh``, or ``none``) and unit normalisation of each
    bin's vector, so that bins of one source point the same way (Hershey et al., ICASSP
    2016). Input (..., input_size); output (..., nb_bins, embedding_dim).
    """

    activations = ("sigmoid", "tanh", "none")

    def __init__(
        self, input_size: int, nb_bins: int, embedding_dim: int = 20, activation: str = "sigmoid"
    ) -> None:
        super().__init__()
        if activation not in self.activations:
            raise ValueError(
                f"unknown embedding activation {activation!r}: use one of {list(self.activations)}"
            )
        self.nb_bins = nb_bins
        self.embedding_dim = embedding_dim
        self.activation = activation
        self.linear = nn.Linear(input_size, nb_bins * embedding_dim)

    def forward(self, features: Tensor) -> Tensor:
        x = self.linear(features)
        x = x.reshape(*features.shape[:-1], self.nb_bins, self.embedding_dim)
        if self.activation == "sigmoid":
            x = torch.sigmoid(x)
        elif self.activation == "tanh":
            x = torch.tanh(x)
        return nn.functional.normalize(x, dim=-1, eps=1e-8)


def flatten_bins(embeddings: Tensor, nb_channels: int) -> Tensor:
    """``BinEmbedding``'s output (batch, frames, channels * bins, dim) -> (batch, channels *
    bins * frames, dim), bins in the order of a (channels, bins, frames) spectrogram
    flattened."""
    batch, frames, _, dim = embeddings.shape
    embeddings = embeddings.reshape(batch, frames, nb_channels, -1, dim)
    return embeddings.permute(0, 2, 3, 1, 4).reshape(batch, -1, dim)
