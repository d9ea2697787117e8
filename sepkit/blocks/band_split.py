"""The band-split front end and per-band mask estimator of the band-split RoFormers
(Lu et al. 2023; Wang et al. 2023), and the spectrogram layout they work in.

Both models flatten a complex spectrogram (batch, channels, freq, frames) into rows of
"frequency-major, channel-minor" values: row ``f * channels + c`` holds bin f of channel
c (``interleave_channels``). A band is a run of such rows; its features are the rows'
real and imaginary parts side by side, so a band of ``n`` rows has ``2 * n`` inputs.
Attribute names (``to_features``, ``to_freqs``) follow the community checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sepkit.blocks.roformer import RMSNorm


def interleave_channels(spectrogram: Tensor) -> Tensor:
    """(batch, channels, freq, frames) -> (batch, freq * channels, frames), bin-major."""
    batch, channels, freq, frames = spectrogram.shape
    return spectrogram.transpose(1, 2).reshape(batch, freq * channels, frames)


def deinterleave_channels(spectrogram: Tensor, channels: int) -> Tensor:
    """(..., freq * channels, frames) -> (..., channels, freq, frames)."""
    *leading, rows, frames = spectrogram.shape
    return spectrogram.reshape(*leading, rows // channels, channels, frames).transpose(-3, -2)


def band_features(rows: Tensor) -> Tensor:
    """Complex rows (batch, rows, frames) -> real features (batch, frames, rows * 2): each
    row's real and imaginary part side by side."""
    return torch.view_as_real(rows).transpose(1, 2).flatten(2)


def complex_masks(features: Tensor) -> Tensor:
    """Mask estimators' outputs (batch, sources, frames, rows * 2) -> complex masks
    (batch, sources, rows, frames)."""
    masks = features.unflatten(-1, (-1, 2)).transpose(2, 3).contiguous()
    return torch.view_as_complex(masks.float())


class BandSplit(nn.Module):
    """(batch, frames, sum(dim_inputs)) -> (batch, frames, bands, dim): each band's
    ``dim_inputs[i]`` features normalised (RMSNorm) and projected to ``dim``."""

    def __init__(self, dim: int, dim_inputs: tuple[int, ...]) -> None:
        super().__init__()
        self.dim_inputs = tuple(dim_inputs)
        self.to_features = nn.ModuleList(
            nn.Sequential(RMSNorm(dim_in), nn.Linear(dim_in, dim)) for dim_in in dim_inputs
        )

    def forward(self, x: Tensor) -> Tensor:
        bands = x.split(self.dim_inputs, dim=-1)
        return torch.stack([net(band) for band, net in zip(bands, self.to_features)], dim=-2)


def mlp(dim_in: int, dim_out: int, dim_hidden: int, hidden_layers: int) -> nn.Sequential:
    """Linear layers dim_in -> dim_hidden (``hidden_layers`` times) -> dim_out, tanh between."""
    dims = (dim_in, *(dim_hidden,) * hidden_layers, dim_out)
    layers: list[nn.Module] = []
    for index, (inputs, outputs) in enumerate(zip(dims[:-1], dims[1:])):
        if index:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    """(batch, frames, bands, dim) -> (batch, frames, sum(dim_inputs)): per band an MLP
    (``hidden_layers`` hidden layers of ``dim * mlp_expansion_factor`` units) to twice the
    band's inputs, halved by a GLU: one complex mask value per input row and frame."""

    def __init__(
        self,
        dim: int,
        dim_inputs: tuple[int, ...],
        hidden_layers: int,
        mlp_expansion_factor: int = 4,
    ) -> None:
        super().__init__()
        self.dim_inputs = tuple(dim_inputs)
        hidden = dim * mlp_expansion_factor
        self.to_freqs = nn.ModuleList(
            nn.Sequential(mlp(dim, dim_in * 2, hidden, hidden_layers), nn.GLU(dim=-1))
            for dim_in in dim_inputs
        )

    def forward(self, x: Tensor) -> Tensor:
        bands = x.unbind(dim=-2)
        return torch.cat([net(band) for band, net in zip(bands, self.to_freqs)], dim=-1)
