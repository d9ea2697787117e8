"""Learned analysis and synthesis filterbanks for time-domain separation (TasNet family).

The encoder cuts the waveform into overlapping frames of ``kernel_size`` samples, every
``stride`` samples, and projects each frame on ``filters`` learned basis signals (a strided
1-D convolution). The decoder maps each frame's coefficients back to ``kernel_size``
samples per channel (a linear layer) and overlap-adds the frames: together, a learned
STFT/iSTFT pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODER_ACTIVATIONS = ("relu", "linear")


def covering_length(length: int, kernel_size: int, stride: int) -> int:
    """The smallest length >= ``length`` whose frames cover every sample, none left over."""
    if length <= kernel_size:
        return kernel_size
    return kernel_size + -(-(length - kernel_size) // stride) * stride


def overlap_add(frames: Tensor, stride: int) -> Tensor:
    """Sum frames placed every ``stride`` samples.

    frames (..., frames, frame_length) -> signal (..., (frames - 1) * stride + frame_length).
    """
    *leading, count, frame_length = frames.shape
    length = (count - 1) * stride + frame_length
    columns = frames.reshape(-1, count, frame_length).transpose(1, 2)  # (batch, length, frames)
    signal = F.fold(columns, output_size=(1, length), kernel_size=(1, frame_length), stride=stride)
    return signal.reshape(*leading, length)


class LearnedEncoder(nn.Module):
    """Waveform (batch, channels, time) -> coefficients (batch, filters, frames).

    A convolution of ``filters`` kernels of ``kernel_size`` samples over all channels,
    every ``stride`` samples, without bias; ``activation="relu"`` keeps the coefficients
    non-negative (TasNet's mixture weights), ``"linear"`` leaves them signed.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        stride: int,
        channels: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ENCODER_ACTIVATIONS:
            raise ValueError(
                f"encoder activation {activation!r}: use one of {list(ENCODER_ACTIVATIONS)}"
            )
        self.kernel_size = kernel_size
        self.stride = stride
        self.activation = activation
        self.conv = nn.Conv1d(channels, filters, kernel_size, stride=stride, bias=False)

    def forward(self, waveform: Tensor) -> Tensor:
        coefficients = self.conv(waveform)
        return torch.relu(coefficients) if self.activation == "relu" else coefficients


class GatedEncoder(nn.Module):
    """TasNet's gated encoder (Luo & Mesgarani, ICASSP 2018).

    Frames (batch, frames, kernel_size) -> coefficients (batch, frames, filters):
    ``ReLU(x U) * sigmoid(x V)``, two learned bases, the second gating the first.
    """

    def __init__(self, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.basis = nn.Linear(kernel_size, filters, bias=False)
        self.gate = nn.Linear(kernel_size, filters, bias=False)

    def forward(self, frames: Tensor) -> Tensor:
        return torch.relu(self.basis(frames)) * torch.sigmoid(self.gate(frames))


class OverlapAddDecoder(nn.Module):
    """Coefficients (..., filters, frames) -> waveform (..., channels, time).

    Each frame's coefficients are mapped to ``kernel_size`` samples per channel by a
    linear basis (no bias) and the frames are overlap-added every ``stride`` samples, so
    time = (frames - 1) * stride + kernel_size.
    """

    def __init__(self, filters: int, kernel_size: int, stride: int, channels: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.channels = channels
        self.basis = nn.Linear(filters, channels * kernel_size, bias=False)

    def forward(self, coefficients: Tensor) -> Tensor:
        *leading, _, count = coefficients.shape
        frames = self.basis(coefficients.transpose(-1, -2))  # (..., frames, channels * kernel)
        frames = frames.reshape(*leading, count, self.channels, self.kernel_size)
        return overlap_add(frames.transpose(-3, -2), self.stride)
