"""Down- and upsampling blocks of a 1-D U-Net on waveforms with valid convolutions, as in
Wave-U-Net (Stoller, Ewert, Dixon, ISMIR 2018).

Valid convolutions shorten their input by ``kernel_size - 1``; decimation keeps every
other sample; interpolation doubles the resolution without extrapolating, n -> 2n - 1
samples. Skip connections are centre-cropped to the upsampled length before being joined.
So the network predicts the centre of its input, and the borders are context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.crop import center_trim

UPSAMPLING = ("linear", "learned")


class Interpolation(nn.Module):
    """(batch, features, n) -> (batch, features, 2n - 1): the inputs at even positions and,
    between each pair, a mix ``w x[k] + (1 - w) x[k + 1]``.

    ``linear`` fixes w = 1/2 (linear interpolation); ``learned`` learns w in (0, 1) per
    feature (sigmoid of a parameter, starting at 1/2).
    """

    def __init__(self, features: int, mode: str = "linear") -> None:
        super().__init__()
        if mode not in UPSAMPLING:
            raise ValueError(f"unknown upsampling {mode!r}: use one of {list(UPSAMPLING)}")
        self.mode = mode
        self.weight = nn.Parameter(torch.zeros(features)) if mode == "learned" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.weight is None:
            between = 0.5 * (x[..., :-1] + x[..., 1:])
        else:
            w = torch.sigmoid(self.weight)[:, None]
            between = w * x[..., :-1] + (1 - w) * x[..., 1:]
        batch, features, length = x.shape
        # interleave: x0, b0, x1, b1, ..., x(n-1)
        pairs = torch.stack([x[..., :-1], between], dim=-1).reshape(batch, features, -1)
        return torch.cat([pairs, x[..., -1:]], dim=-1)


class DownsamplingBlock(nn.Module):
    """(batch, in_channels, n) -> (decimated (batch, out_channels, ceil((n - k + 1) / 2)),
    skip (batch, out_channels, n - k + 1)).

    Valid convolution of ``kernel_size`` k, LeakyReLU (slope 0.2), then every other sample.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 15) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = F.leaky_relu(self.conv(x), 0.2)
        return features[..., ::2], features


class UpsamplingBlock(nn.Module):
    """(x (batch, in_channels, n), skip (batch, skip_channels, >= 2n - 1)) ->
    (batch, out_channels, 2n - 1 - (kernel_size - 1)).

    Interpolation to 2n - 1 samples, the skip centre-cropped to that length and put in
    front of it, a valid convolution of ``kernel_size`` and LeakyReLU (slope 0.2).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        upsampling: str = "linear",
    ) -> None:
        super().__init__()
        self.upsample = Interpolation(in_channels, upsampling)
        self.conv = nn.Conv1d(skip_channels + in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.upsample(x)
        x = torch.cat([center_trim(skip, x.shape[-1]), x], dim=1)
        return F.leaky_relu(self.conv(x), 0.2)
